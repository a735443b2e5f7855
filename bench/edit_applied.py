#!/usr/bin/env python3
"""One weight edit, timed from the write to the new config version being served.

Usage: edit_applied.py ADMIN_PORT FILE FROM_A TO_A FROM_B TO_B

Replaces the first `weight: FROM_A` line of FILE with `weight: TO_A` (and likewise B) the way
`sed -i` does (a new file renamed over the old one), then polls `sluice_config_version` on
/metrics every 2 ms over one keep-alive connection, and prints the seconds from just before the
write to the first answer with a higher version. One process for the whole edit: spawning a
`curl` and an `awk` per poll, as a shell loop does, costs several milliseconds each on a small
machine and takes CPU from the proxy being measured.
"""
import http.client
import os
import re
import sys
import time

VERSION = re.compile(rb"^sluice_config_version (\S+)", re.M)


def version(conn):
    conn.request("GET", "/metrics")
    body = conn.getresponse().read()
    m = VERSION.search(body)
    return float(m.group(1)) if m else -1.0


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    a_from, a_to, b_from, b_to = sys.argv[3:7]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    before = version(conn)
    with open(path) as f:
        text = f.read()
    for old, new in ((a_from, a_to), (b_from, b_to)):
        text = re.sub(rf"^(\s*)weight: {old}$", rf"\g<1>weight: {new}", text, count=1, flags=re.M)
    tmp = os.path.join(os.path.dirname(path), ".edit-" + os.path.basename(path))
    t0 = time.monotonic()
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    deadline = t0 + 120
    while version(conn) <= before:
        if time.monotonic() > deadline:
            sys.exit("not applied within 120 s")
        time.sleep(0.002)
    print(f"{time.monotonic() - t0:.3f}")


if __name__ == "__main__":
    main()
