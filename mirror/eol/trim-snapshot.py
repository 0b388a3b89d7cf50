#!/usr/bin/env python3
"""Builds the lifecycle snapshot built into the patchward binary (mirror/eol/snapshot.json)
from an endoflife.date export in the shape of ../shared/fixtures/eol/endoflife-date-products.json.

Kept: every product of category "os" and "database", and the server applications an SMB
site runs on hosts that may outlive their support (listed below). Per cycle only the
fields the lifecycle states read. Values are copied unchanged.

Usage: mirror/eol/trim-snapshot.py SOURCE.json > mirror/eol/snapshot.json
"""
import json
import sys

CATEGORIES = {"os", "database"}
SERVER_APPS = {
    "apache-http-server", "nginx", "tomcat", "msexchange", "sharepoint", "iis",
    "vmware-vcenter", "veeam-backup-and-replication", "citrix-vad", "zabbix",
    "nextcloud", "gitlab", "jenkins", "php", "openssl",
}
FIELDS = ("releaseCycle", "codename", "releaseDate", "eoas", "eol", "eoes", "lts")

src = json.load(open(sys.argv[1]))
products = []
for p in src["products"]:
    if p.get("category") in CATEGORIES or p["product"] in SERVER_APPS:
        products.append({
            "product": p["product"],
            "title": p.get("title", p["product"]),
            "category": p.get("category", ""),
            "releases": [{k: r[k] for k in FIELDS if k in r} for r in p["releases"]],
        })
out = {k: src[k] for k in ("source", "source_commit", "source_date", "license")}
out["products"] = products
json.dump(out, sys.stdout, indent=0, sort_keys=False)
sys.stdout.write("\n")
