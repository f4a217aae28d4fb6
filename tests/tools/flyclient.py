#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""flyclient: a client that speaks to the relay as flyctl's WireGuard-over-WebSocket mode does
(python3 stdlib only; written from the behaviour of superfly/flyctl wg/ws.go, not its code).

Like flyctl: it dials wss://IP:443/ (path /, by address: no SNI, no certificate check), with
an Origin header and no Sec-WebSocket-Protocol; the relay must answer 101 without naming a
subprotocol. It sends the preamble 2f ac ed 77 as a message of its own, then each datagram
that arrives on its local UDP port (where WireGuard sends) as one TEXT message "u32
big-endian length ‖ datagram" (--split: length and datagram as two messages, as flyctl did
before March 2025), and a zero-length record "00 00 00 00" when nothing was read or written
for a second. What the relay sends is a byte stream of such records across TEXT messages;
each datagram goes to the UDP address the last local datagram came from. A BINARY message
from the relay is an error (flyctl closes with 1003), as is a record before any local
datagram (flyctl has nowhere to send it), and the client exits 1.

Output lines: "connected", then at exit (SIGTERM, or an error) "stats up N down N
keepalives N" and "error WHY" if any. Exit 0 on SIGTERM.
"""

import argparse
import base64
import hashlib
import os
import select
import signal
import socket
import ssl
import struct
import sys
import time

from jitload import frame  # one masked, final client frame (the tools share it)

OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 1, 2, 8, 9, 10
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PREAMBLE = bytes.fromhex("2faced77")


def say(*w):
    print(*w, flush=True)


class Client:
    def __init__(self, a):
        self.a = a
        self.up = self.down = self.keepalives = 0
        self.rx = b""      # undecoded bytes from the TLS stream
        self.stream = b""  # the record stream (payloads of TEXT messages)
        self.peer = None   # where WireGuard sends from
        self.last_io = time.monotonic()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        host, port = a.listen.rsplit(":", 1)
        self.udp.bind((host, int(port)))
        raw = socket.create_connection(self.dial(), timeout=10)
        if a.proxy:
            ph, pp = a.proxy.rsplit(":", 1)
            raw.close()
            raw = socket.create_connection((ph, int(pp)), timeout=10)
            raw.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (a.server, a.server)).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                d = raw.recv(1)
                if not d:
                    raise EOFError("proxy closed")
                head += d
            if b" 200 " not in head.split(b"\r\n")[0]:
                raise ConnectionError("proxy: " + head.split(b"\r\n")[0].decode("latin-1"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.tls = ctx.wrap_socket(raw, server_hostname=None)  # by address: no SNI
        self.upgrade()
        self.tls.setblocking(False)
        self.send(OP_TEXT, PREAMBLE)

    def dial(self):
        if self.a.proxy:
            h, p = self.a.proxy.rsplit(":", 1)
        else:
            h, p = self.a.server.rsplit(":", 1)
        return (h, int(p))

    def upgrade(self):
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: wss://%s/\r\n"
               "User-Agent: Go-http-client/1.1\r\n\r\n") % (self.a.server, key, self.a.server)
        self.tls.sendall(req.encode())
        while b"\r\n\r\n" not in self.rx:
            d = self.tls.recv(4096)
            if not d:
                raise EOFError("closed before the upgrade answer")
            self.rx += d
        head, self.rx = self.rx.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError("upgrade: " + lines[0])
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                for l in lines[1:] if ":" in l}
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        if "sec-websocket-protocol" in hdrs:  # flyctl asked for none: a violation to it
            raise ConnectionError("the server named a subprotocol: %s" % hdrs["sec-websocket-protocol"])

    def send(self, op, payload):
        data = frame(op, payload)
        self.tls.setblocking(True)
        self.tls.sendall(data)
        self.tls.setblocking(False)
        self.last_io = time.monotonic()

    def on_udp(self):
        d, src = self.udp.recvfrom(65536)
        self.peer = src
        rec = struct.pack("!I", len(d))
        if self.a.split:
            self.send(OP_TEXT, rec)
            self.send(OP_TEXT, d)
        else:
            self.send(OP_TEXT, rec + d)
        self.up += 1

    def on_tls(self):
        try:
            d = self.tls.recv(65536)
        except ssl.SSLWantReadError:
            return
        if not d:
            raise EOFError("the relay closed the connection")
        self.rx += d
        self.last_io = time.monotonic()
        while True:
            if len(self.rx) < 2:
                return
            b0, b1 = self.rx[0], self.rx[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(self.rx) < 4:
                    return
                n, off = struct.unpack("!H", self.rx[2:4])[0], 4
            elif n == 127:
                if len(self.rx) < 10:
                    return
                n, off = struct.unpack("!Q", self.rx[2:10])[0], 10
            if b1 & 0x80:
                raise ConnectionError("a masked frame from the server")
            if len(self.rx) < off + n:
                return
            op, payload, self.rx = b0 & 0x0F, self.rx[off:off + n], self.rx[off + n:]
            if op == OP_PING:
                self.send(OP_PONG, payload)
            elif op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise EOFError("the relay closed the WebSocket (%s)" % code)
            elif op == OP_BIN:
                raise ConnectionError("a BINARY message from the relay (flyctl closes, 1003)")
            elif op in (OP_TEXT, 0):
                self.stream += payload
                self.records()

    def records(self):
        while len(self.stream) >= 4:
            n = struct.unpack("!I", self.stream[:4])[0]
            if len(self.stream) < 4 + n:
                return
            d, self.stream = self.stream[4:4 + n], self.stream[4 + n:]
            if not n:
                continue
            if self.peer is None:
                raise ConnectionError("a record before any local datagram")
            self.udp.sendto(d, self.peer)
            self.down += 1

    def run(self):
        say("connected")
        while True:
            r = [self.udp] + ([] if self.tls.pending() else [self.tls])
            ready = self.tls.pending() and [self.tls] or select.select(r, [], [], 0.2)[0]
            for s in ready:
                if s is self.udp:
                    self.on_udp()
                else:
                    self.on_tls()
            if time.monotonic() - self.last_io > 1.0:  # flyctl: idle for 1 s
                self.send(OP_TEXT, b"\0\0\0\0")
                self.keepalives += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("server", help="IP:PORT of the relay (flyctl dials the gateway's address, 443)")
    p.add_argument("--listen", default="127.0.0.1:51820", help="local UDP ADDR:PORT for WireGuard")
    p.add_argument("--proxy", metavar="HOST:PORT", help="through an HTTP proxy (CONNECT)")
    p.add_argument("--split", action="store_true", help="length and datagram as two messages")
    a = p.parse_args()
    c = None
    err = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        c = Client(a)
        c.run()
    except KeyboardInterrupt:
        pass
    except (OSError, EOFError, ConnectionError, ValueError) as e:
        err = str(e) or type(e).__name__
    if c:
        say("stats up %d down %d keepalives %d" % (c.up, c.down, c.keepalives))
    if err:
        say("error " + err)
        sys.exit(1)


if __name__ == "__main__":
    main()
