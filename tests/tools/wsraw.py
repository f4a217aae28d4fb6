#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""wsraw: a hostile WebSocket client for testing the wgws relay (python3 stdlib only).

Connects over TCP (optionally through an HTTP CONNECT proxy), does TLS without verification,
sends an RFC 6455 upgrade with "Sec-WebSocket-Protocol: wgws", checks for 101, then sends each
hex argument as one masked BINARY message, byte for byte: nothing is validated, so lying
lengths, truncated records and garbage all go out as given. Afterwards it either aborts the
TCP connection (no close frame), sends a close frame, or just waits, and reports what the
server sent back.

Output, one event per line (flushed, so a test can wait for a line):
  status NNN            the upgrade response status (101 expected; "eof" when the server
                        closed the connection without answering)
  sent N                N messages sent
  recv binary|text N    a data message of N bytes from the server
  close CODE [REASON]   the server's close frame (CODE "none" when it had no code)
  ping                  a ping from the server (answered with a pong), read after sending
  eof                   the server closed TCP without a close frame
  reset                 the connection was reset
  timeout               nothing ended the connection within --wait seconds
  aborted               we dropped the TCP connection (--abort)
Exit status: 0 after a 101 (whatever happened next), 3 for another status, 2 for a connection,
proxy or TLS failure.
"""

import argparse
import base64
import os
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def say(*words):
    print(*words, flush=True)


def hexbytes(s):
    """Hex to bytes; whitespace, ':' and '_' are ignored."""
    for c in " \t\n:_":
        s = s.replace(c, "")
    try:
        return bytes.fromhex(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError("bad hex: %s" % e)


def frame(op, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return hdr + key + masked


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_http_head(self, limit=16384):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("response head too long")
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head.decode("latin-1")

    def read_frame(self):
        b0, b1 = self.read_exact(2)
        op, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8))[0]
        key = self.read_exact(4) if b1 & 0x80 else None
        payload = self.read_exact(n)
        if key:
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        return op, bool(b0 & 0x80), payload


def parse_args():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  # a 64-byte type-4 record, then wait for the server's reaction
  wsraw.py wss://127.0.0.1/wg 0040 04000000deadbeef$(printf '%%0112d' 0)
  # through squid, name resolved by the proxy
  wsraw.py --proxy 10.201.3.2:3128 wss://gw.wgws.test/wg 0000
  # a cut record and a hard TCP drop
  wsraw.py --abort wss://127.0.0.1/wg 009401000000...
""" + __doc__.split("\n\n", 2)[2])
    p.add_argument("url", help="ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH (default port 80/443)")
    p.add_argument("msg", nargs="*", type=hexbytes,
                   help="one WebSocket message per argument, as hex (sent as given)")
    p.add_argument("--connect-to", metavar="HOST[:PORT]",
                   help="open TCP to this address instead of the URL's (Host/SNI stay the URL's)")
    p.add_argument("--proxy", metavar="HOST:PORT", help="HTTP proxy: CONNECT to the URL's host:port")
    p.add_argument("--bind", metavar="ADDR", help="connect from this local address")
    p.add_argument("--stamp", action="store_true",
                   help='print "connecting" first, right before the TCP connect')
    p.add_argument("--protocol", default="wgws",
                   help="Sec-WebSocket-Protocol value (default wgws; '' sends none)")
    p.add_argument("--header", action="append", default=[], metavar="'Name: value'",
                   help="extra request header (repeatable)")
    p.add_argument("--text", action="store_true", help="send TEXT instead of BINARY messages")
    p.add_argument("--no-mask", action="store_true", help="send unmasked frames (a protocol violation)")
    p.add_argument("--fragment", type=int, default=0, metavar="N",
                   help="split each message into frames of at most N bytes (continuations)")
    p.add_argument("--delay", type=float, default=0.0, metavar="S",
                   help="pause S seconds before each message")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--abort", action="store_true",
                     help="after sending, drop the TCP connection at once (RST, no close frame)")
    end.add_argument("--close", action="store_true",
                     help="after sending, send a close frame (--close-code) and wait for the reply")
    p.add_argument("--close-code", type=int, default=1000, metavar="CODE",
                   help="the code --close sends (default 1000)")
    p.add_argument("--linger", type=float, default=0.3, metavar="S",
                   help="with --abort: wait S seconds first, so the server has read what we sent "
                        "(default 0.3)")
    p.add_argument("--wait", type=float, default=2.0, metavar="S",
                   help="how long to wait for the server's close (default 2; 0 = do not wait)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="connect/TLS/upgrade timeout (default 5)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print received data messages")
    return p.parse_intermixed_args()


def hostport(s, default_port):
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif s.count(":") == 1:
        host, port = s.split(":")
    else:
        host, port = s, ""
    return host, int(port) if port else default_port


def connect(a):
    u = urlsplit(a.url)
    if u.scheme not in ("ws", "wss"):
        sys.exit("wsraw: URL must be ws:// or wss://")
    tls = u.scheme == "wss"
    host, port = hostport(u.netloc, 443 if tls else 80)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    if a.proxy:
        th, tp = hostport(a.proxy, 3128)
    elif a.connect_to:
        th, tp = hostport(a.connect_to, port)
    else:
        th, tp = host, port
    if a.stamp:
        say("connecting")
    sock = socket.create_connection((th, tp), timeout=a.timeout,
                                    source_address=(a.bind, 0) if a.bind else None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = Conn(sock)
    if a.proxy:
        hp = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
        sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (hp, hp)).encode())
        head = c.read_http_head()
        line = head.split("\r\n", 1)[0]
        if line.split(" ")[1:2] != ["200"]:
            say("proxy", line)
            sys.exit(2)
        say("proxy", line)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sni = None if host.replace(".", "").isdigit() or ":" in host else host
        sock = ctx.wrap_socket(sock, server_hostname=sni)
        if c.buf:
            sys.exit("wsraw: proxy sent bytes after its 200")
        c.sock = sock
    key = base64.b64encode(os.urandom(16)).decode()
    hosthdr = u.netloc
    req = ["GET %s HTTP/1.1" % path, "Host: %s" % hosthdr, "Upgrade: websocket",
           "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: 13"]
    if a.protocol:
        req.append("Sec-WebSocket-Protocol: %s" % a.protocol)
    req += a.header
    c.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
    try:
        head = c.read_http_head()
    except (EOFError, ConnectionResetError, ssl.SSLEOFError):
        say("status eof")  # closed without answering the upgrade
        sys.exit(3)
    line = head.split("\r\n", 1)[0]
    parts = line.split(" ")
    status = parts[1] if len(parts) > 1 else "?"
    say("status", status)
    if status != "101":
        for h in head.split("\r\n")[1:]:
            print("  " + h, file=sys.stderr)
        sys.exit(3)
    return c


def send_messages(a, c):
    op = OP_TEXT if a.text else OP_BIN
    sent = 0
    for m in a.msg:
        if a.delay:
            time.sleep(a.delay)
        if a.fragment > 0 and len(m) > a.fragment:
            chunks = [m[i:i + a.fragment] for i in range(0, len(m), a.fragment)]
            out = b""
            for i, ch in enumerate(chunks):
                out += frame(op if i == 0 else OP_CONT, ch, fin=i == len(chunks) - 1,
                             mask=not a.no_mask)
        else:
            out = frame(op, m, mask=not a.no_mask)
        try:
            c.sock.sendall(out)
        except (OSError, ssl.SSLError) as e:
            # The server closed while we were still sending: stop, and let the
            # caller read whatever it said (its close frame) before it went.
            say("send-error", type(e).__name__)
            return
        sent += 1
    say("sent", sent)


def abort(c):
    # SO_LINGER 0: close() sends RST at once, no TLS close_notify, no WS close.
    raw = c.sock
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    raw.close()  # an SSLSocket's close() sends no close_notify
    say("aborted")


def wait_close(a, c):
    end = time.monotonic() + a.wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            say("timeout")
            return
        c.sock.settimeout(left)
        try:
            op, fin, payload = c.read_frame()
        except (socket.timeout, TimeoutError):
            say("timeout")
            return
        except EOFError:
            say("eof")
            return
        except (ConnectionResetError, BrokenPipeError):
            say("reset")
            return
        except ssl.SSLError as e:
            say("eof" if "EOF" in str(e) else "tls-error %s" % e.reason)
            return
        if op == OP_CLOSE:
            if len(payload) >= 2:
                code = struct.unpack("!H", payload[:2])[0]
                reason = payload[2:].decode("utf-8", "replace")
                say("close", code, reason) if reason else say("close", code)
            else:
                say("close", "none")
            try:
                c.sock.sendall(frame(OP_CLOSE, payload[:2]))
            except OSError:
                pass
            return
        if op == OP_PING:
            say("ping")
            c.sock.sendall(frame(OP_PONG, payload))
        elif op in (OP_BIN, OP_TEXT, OP_CONT) and not a.quiet:
            say("recv", "text" if op == OP_TEXT else "binary", len(payload))


def main():
    a = parse_args()
    try:
        c = connect(a)
    except (OSError, ValueError, EOFError, ssl.SSLError) as e:
        say("error", "%s: %s" % (type(e).__name__, e))
        sys.exit(2)
    try:
        send_messages(a, c)
        if a.abort:
            if a.linger:
                time.sleep(a.linger)
            abort(c)
            return
        if a.close:
            c.sock.sendall(frame(OP_CLOSE, struct.pack("!H", a.close_code)))
        if a.wait > 0:
            wait_close(a, c)
    except (BrokenPipeError, ConnectionResetError):
        say("reset")
    except EOFError:
        say("eof")


if __name__ == "__main__":
    main()
