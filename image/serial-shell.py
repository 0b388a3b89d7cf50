#!/usr/bin/env python3
"""Drives a root shell on a VM's serial console, for image/smoke-test.sh.

    serial-shell.py LOG TIMEOUT COMMANDS -- QEMU-COMMAND...

Starts QEMU with the serial console on stdin/stdout, answers sulogin's "Press Enter
for maintenance" (the maintenance boot entry: rescue.target with a locked root),
types COMMANDS at the first root prompt, and waits for QEMU to exit. Everything the
console printed goes to LOG. Exits with QEMU's status, or 124 after TIMEOUT seconds.
"""
import os
import select
import subprocess
import sys
import time


def main() -> int:
    log, timeout, commands = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    qemu = sys.argv[sys.argv.index("--") + 1:]
    p = subprocess.Popen(qemu, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    start = time.time()
    buf = b""
    last_enter = 0.0
    sent = False
    with open(log, "wb") as out:
        while p.poll() is None:
            if time.time() - start > timeout:
                p.kill()
                p.wait()
                return 124
            ready, _, _ = select.select([p.stdout], [], [], 1)
            if ready:
                data = os.read(p.stdout.fileno(), 4096)
                if not data:
                    break
                out.write(data)
                out.flush()
                buf = (buf + data)[-4096:]
            if sent:
                continue
            if b"root@" in buf[-300:]:
                time.sleep(1)
                p.stdin.write(commands.encode() + b"\n")
                p.stdin.flush()
                sent = True
            elif b"Press Enter" in buf and time.time() - last_enter > 8:
                # sulogin flushes input when it prompts: answer a moment later.
                time.sleep(3)
                p.stdin.write(b"\r")
                p.stdin.flush()
                last_enter = time.time()
    return p.wait()


if __name__ == "__main__":
    sys.exit(main())
