#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""hostile: many misbehaving clients at once against the wgws relay (python3 stdlib only).

  hostile.py upgrades HOST:PORT PATH --protocol P [--protocol P ...] [--count N] [--host H]
      For each protocol value (the literal Sec-WebSocket-Protocol header; "-" = no header),
      COUNT TLS upgrade requests one after another; prints "PROTO -> status: count" lines.
  hostile.py idle HOST:PORT --count N --hold S [--bind ADDR] [--send hello|head] [--gap MS]
      Open N TCP connections (from ADDR) and hold them S seconds: silent, or after a partial
      TLS ClientHello (hello), or after TLS and a partial request head (head). Prints
      "opened N" once all were tried, "closed N" for those the server closed meanwhile (or
      while they were set up). --gap: wait MS between two connections.
"""

import argparse
import base64
import os
import select
import socket
import ssl
import sys
import time


def say(*w):
    print(*w, flush=True)


def tls_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def one_upgrade(addr, path, proto, host, bind):
    s = socket.create_connection(addr, timeout=5, source_address=(bind, 0) if bind else None)
    try:
        s = tls_ctx().wrap_socket(s)
        req = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Upgrade: websocket",
               "Connection: Upgrade",
               "Sec-WebSocket-Key: %s" % base64.b64encode(os.urandom(16)).decode(),
               "Sec-WebSocket-Version: 13"]
        if proto != "-":
            req.append("Sec-WebSocket-Protocol: %s" % proto)
        s.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            b = s.recv(4096)
            if not b:
                break
            data += b
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        return parts[1] if len(parts) > 1 else "eof"
    except (OSError, ssl.SSLError):
        return "eof"
    finally:
        s.close()


def cmd_upgrades(a):
    host, port = a.addr.rsplit(":", 1)
    for proto in a.protocol:
        counts = {}
        for _ in range(a.count):
            st = one_upgrade((host, int(port)), a.path, proto, a.host or host, a.bind)
            counts[st] = counts.get(st, 0) + 1
        say("%r -> %s" % (proto, ", ".join("%s: %d" % kv for kv in sorted(counts.items()))))


def cmd_idle(a):
    host, port = a.addr.rsplit(":", 1)
    socks = []
    refused = 0
    for _ in range(a.count):
        try:
            s = socket.create_connection((host, int(port)), timeout=5,
                                         source_address=(a.bind, 0) if a.bind else None)
            if a.send == "hello":
                # The first bytes of a TLS record header and a ClientHello, never finished.
                s.sendall(bytes.fromhex("16030100c8010000c40303"))
            elif a.send == "head":
                s = tls_ctx().wrap_socket(s)
                s.sendall(b"GET /wg HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except (OSError, ssl.SSLError):
            refused += 1  # closed by the server while we set it up
        time.sleep(a.gap / 1000)
    # "opened N": N attempted; "closed N" counts those closed during setup too.
    say("opened", a.count)
    end = time.time() + a.hold
    closed = set()
    while time.time() < end and len(closed) < len(socks):
        live = [s for s in socks if s.fileno() not in closed]
        r, _, _ = select.select(live, [], [], min(0.2, max(0, end - time.time())))
        for s in r:
            try:
                if not s.recv(4096):
                    closed.add(s.fileno())
            except (OSError, ssl.SSLError):
                closed.add(s.fileno())
    say("closed", len(closed) + refused)
    for s in socks:
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upgrades")
    u.add_argument("addr")
    u.add_argument("path")
    u.add_argument("--protocol", action="append", required=True)
    u.add_argument("--count", type=int, default=1)
    u.add_argument("--host")
    u.add_argument("--bind")
    i = sub.add_parser("idle")
    i.add_argument("addr")
    i.add_argument("--count", type=int, required=True)
    i.add_argument("--hold", type=float, required=True)
    i.add_argument("--bind")
    i.add_argument("--send", choices=["hello", "head"])
    i.add_argument("--gap", type=float, default=0, help="ms between two connections")
    a = p.parse_args()
    {"upgrades": cmd_upgrades, "idle": cmd_idle}[a.cmd](a)


if __name__ == "__main__":
    main()
