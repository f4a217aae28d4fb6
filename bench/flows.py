#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/flows.py: N idle UDP flows for make bench's scale step (bench/scale.sh).

    flows.py --to 127.0.0.1:PORT[,PORT...] --count N [--per-second R] [--every S]

Opens N UDP sockets, each connected to one of the ports in turn (several shims), and sends
one 64-byte datagram shaped like WireGuard data (04 00 00 00 ...) on each, R sockets per
second (default: as fast as it can), so that each one becomes a tunnel of its own. Then it
sends one more datagram per flow every S seconds (default 10) until SIGTERM, so nothing idles
out, and drains what comes back. Prints "start NS" first (time.monotonic_ns() as it begins:
CLOCK_MONOTONIC, the clock of udpload ping --trace) and "flows N opened in T s" when all
have sent once.
Loopback only; the bench removes it by pid."""
import argparse
import select
import signal
import socket
import sys
import time

DGRAM = b"\x04\x00\x00\x00" + bytes(60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--per-second", type=float, default=0)
    ap.add_argument("--every", type=float, default=10)
    a = ap.parse_args()
    host, ports = a.to.rsplit(":", 1)
    ports = [int(p) for p in ports.split(",")]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    socks = []
    print("start %d" % time.monotonic_ns(), flush=True)
    t0 = time.monotonic()
    for i in range(a.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((host, ports[i % len(ports)]))
        try:
            s.send(DGRAM)
        except OSError:
            pass
        socks.append(s)
        if a.per_second:
            due = t0 + (i + 1) / a.per_second
            while time.monotonic() < due:
                time.sleep(min(0.01, max(0, due - time.monotonic())))
        if stop:
            return 0
    print("flows %d opened in %.3f s" % (a.count, time.monotonic() - t0), flush=True)
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    by_fd = {s.fileno(): s for s in socks}
    # flow i sends again at t1 + i * every / N, t1 + every + i * every / N, ...: N / every
    # datagrams per second in all, whatever comes back
    nxt, sent, t1 = 0, 0, time.monotonic()
    while not stop:
        for fd, _ in poller.poll(0.05):
            try:
                while by_fd[fd].recv(2048):
                    pass
            except OSError:
                pass
        due = int((time.monotonic() - t1) * len(socks) / a.every)
        while sent < due and not stop:
            try:
                socks[nxt].send(DGRAM)
            except OSError:
                pass
            nxt = (nxt + 1) % len(socks)
            sent += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
