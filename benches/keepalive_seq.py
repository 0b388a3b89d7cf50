#!/usr/bin/env python3
"""Sequential GETs on one keep-alive HTTP/1.1 connection (BENCHMARKS.md, "no 40 ms
stalls"): python3 keepalive_seq.py HOST PORT N PATH..."""
import http.client, sys, time, statistics
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]); paths = sys.argv[4:]
c = http.client.HTTPConnection(host, port)
for p in paths:
    c.request("GET", p); c.getresponse().read()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); c.request("GET", p); r = c.getresponse(); b = r.read(); ts.append((time.perf_counter()-t)*1000)
        assert r.status == 200, (p, r.status)
    ts.sort()
    print(f"{p}: n={n} median {statistics.median(ts):.3f} ms, p90 {ts[int(n*.9)]:.3f} ms, max {ts[-1]:.3f} ms, >=30ms: {sum(t>=30 for t in ts)}, {len(b)} bytes")
