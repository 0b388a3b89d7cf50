#!/usr/bin/env python3
"""Minimal QMP client for image/smoke-test.sh.

    qmp.py SOCKET COMMAND [JSON-ARGUMENTS]

Connects to QEMU's QMP unix socket, negotiates capabilities, runs one command and
prints its "return" value as JSON. Exits 1 on a QMP error or a timeout.
"""
import json
import socket
import sys


def main() -> int:
    path, command = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rw")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            msg = json.loads(line)
            if "event" in msg:
                continue
            return msg

    reply()  # greeting
    f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n")
    f.flush()
    reply()
    req = {"execute": command}
    if args is not None:
        req["arguments"] = args
    f.write(json.dumps(req) + "\n")
    f.flush()
    msg = reply()
    if "error" in msg:
        print(json.dumps(msg["error"]), file=sys.stderr)
        return 1
    print(json.dumps(msg.get("return")))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, ValueError) as e:
        print(f"qmp: {e}", file=sys.stderr)
        sys.exit(1)
