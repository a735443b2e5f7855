#!/usr/bin/env python3
"""Reloads one after the other, each timed, from one process.

Usage: reload_loop.py ADMIN_PORT FILE RELOADS

Each reload edits the first two `weight:` lines of FILE (90/10 and 80/20 in turn) the way
`sed -i` does (a new file renamed over the old one), sends `POST /api/reload`, and 50 ms later
times a `GET /ready` (the admin API must answer while the reload compiles). Prints one line per
reload: the seconds until the POST was answered and the milliseconds `/ready` took. One process
for the whole loop: a shell loop starts a `sed`, two `curl`s and an `awk` per reload, and on a
small machine under load those take the CPU from the proxy being measured.
"""
import http.client
import os
import re
import sys
import threading
import time


def edit(path, old, new):
    with open(path) as f:
        text = f.read()
    for a, b in zip(old, new):
        text = re.sub(rf"^(\s*)weight: {a}$", rf"\g<1>weight: {b}", text, count=1, flags=re.M)
    tmp = os.path.join(os.path.dirname(path), ".edit-" + os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    port, path, reloads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    admin = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for r in range(1, reloads + 1):
        old, new = (("90", "10"), ("80", "20")) if r % 2 else (("80", "20"), ("90", "10"))
        edit(path, old, new)
        outcome = {}

        def reload():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            t0 = time.monotonic()
            conn.request("POST", "/api/reload")
            outcome["status"] = conn.getresponse().status
            outcome["seconds"] = time.monotonic() - t0
            conn.close()

        poster = threading.Thread(target=reload)
        poster.start()
        time.sleep(0.05)
        t0 = time.monotonic()
        admin.request("GET", "/ready")
        admin.getresponse().read()
        ready_ms = (time.monotonic() - t0) * 1000
        poster.join()
        if outcome.get("status") != 200:
            sys.exit(f"POST /api/reload {r} failed: {outcome}")
        print(f"{outcome['seconds']:.3f} {ready_ms:.1f}", flush=True)


if __name__ == "__main__":
    main()
