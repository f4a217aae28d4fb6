#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""udpsink: bind a UDP address and count the datagrams and bytes that arrive (stdlib only).

Prints "datagrams N bytes M" (plus "marked N" with --marker: datagrams containing the marker
bytes anywhere) on SIGTERM/SIGINT, after --seconds, or after --count datagrams. Prints
"listening ADDR:PORT" once bound, so a test can wait for it. With --echo every datagram is
sent back to its source (a stand-in for a UDP peer that answers). With --log every datagram
is also printed as it arrives: "dgram LEN HEX" (HEX: its bytes 4..8, where rec_hex puts the
marker), so a test can check sizes and order.
"""

import argparse
import signal
import socket
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("addr", help="ADDR:PORT to bind, e.g. 127.0.0.1:51820 or [::1]:51820")
    p.add_argument("--marker", metavar="HEX", help="also count datagrams containing these bytes")
    p.add_argument("--seconds", type=float, default=0, help="stop after S seconds (0 = on signal)")
    p.add_argument("--count", type=int, default=0, help="stop after N datagrams")
    p.add_argument("--echo", action="store_true", help="send each datagram back to its source")
    p.add_argument("--log", action="store_true", help='print "dgram LEN HEX" per datagram')
    a = p.parse_args()

    host, _, port = a.addr.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    marker = bytes.fromhex(a.marker) if a.marker else None
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((host, int(port)))
    print("listening %s:%d" % s.getsockname()[:2], flush=True)

    n = nbytes = marked = 0
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    end = time.monotonic() + a.seconds if a.seconds > 0 else None
    while not stop:
        timeout = 0.2
        if end is not None:
            timeout = min(timeout, end - time.monotonic())
            if timeout <= 0:
                break
        s.settimeout(timeout)
        try:
            d, src = s.recvfrom(65536)
        except (socket.timeout, TimeoutError, InterruptedError):
            continue
        n += 1
        nbytes += len(d)
        if marker and marker in d:
            marked += 1
        if a.log:
            print("dgram %d %s" % (len(d), d[4:8].hex()), flush=True)
        if a.echo:
            s.sendto(d, src)
        if a.count and n >= a.count:
            break
    out = "datagrams %d bytes %d" % (n, nbytes)
    if marker:
        out += " marked %d" % marked
    print(out, flush=True)


if __name__ == "__main__":
    sys.exit(main())
