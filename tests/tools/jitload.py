#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""jitload: many wgws tunnels at once, each sending handshake initiations through wgws-relay
and waiting for WireGuard's handshake response (python3 stdlib only, asyncio).

Input (FILE, or stdin): one tunnel per line, "LABEL HEX [HEX...]": a label (jit-initgen prints
the client's public key there) and one or more 148-byte handshake initiations in hex
(`jit-initgen init` output is one such line per initiation). Each tunnel opens TCP (directly,
or through an HTTP CONNECT proxy), TLS without verification, an RFC 6455 upgrade with
"Sec-WebSocket-Protocol: wgws" on the URL's path, then sends its initiations, each as one
record (u16 big-endian length + datagram) in its own binary message (--gap apart; --pace: on
a fixed schedule, see below; --batch: all in one message), and reads records until a 92-byte
type-2 handshake response whose receiver index is one of its initiations' sender indices
arrives, or --timeout seconds after its last initiation.

Opening is paced: at most --inflight tunnels are in TCP/TLS/upgrade at once (a relay's
--max-pending, and the TLS work on both sides, would otherwise collapse under a thundering
herd), and --rate caps new connections per second. By default every tunnel is opened first
and all send at the same moment (--no-barrier: each sends as soon as it is open). Tunnels stay
open until every tunnel has its result, then close, --inflight of them every 10 ms (a relay
serves all the hang-ups it sees in one pass of its loop). The soft RLIMIT_NOFILE is raised to
what the run needs (the hard limit too, when allowed).

--pace (with --gap MS and the barrier) holds a steady rate instead: tunnel k of N (file order)
writes its j-th initiation at T0 + (j + k/N) x MS, T0 being the moment every tunnel is open,
on the monotonic clock, so that N tunnels together send N x 1000/MS initiations a second,
evenly spread, for as long as their lines last; a tunnel that falls behind writes at once
until it is back on schedule (no drift: the rate holds over the run).

Output:
  --out FILE: one line per tunnel "LABEL STATUS LATENCY_MS RECORDS", where STATUS is
    response  a handshake response for one of our initiations came (LATENCY_MS: since the
              last initiation before it was written)
    cookie    a cookie reply came (WireGuard under load) and no response (jitload does not
              answer cookies with a mac2: a real client would, on its next initiation)
    none      nothing answered within --timeout ("-" latency)
    closed:CODE / error:WHAT   the tunnel was closed, or could not be opened
    RECORDS counts the records received (any type).
  stdout: a human-readable summary; "phases (unix time): start T, all open T, all sent T,
    end T" (to line up other measurements with the run); "sent N initiations in S s (R/s),
    at most L ms behind schedule" (S from the first write to the last; L against --pace's
    schedule, 0 without it); and last, "summary tunnels=N
    open=N responses=N cookies=N none=N failed=N open_s=S open_rate=R p50_ms=X p99_ms=X
    max_ms=X" (open_rate in tunnels/s; latencies over the responses, "-" when none came).
Exit status 0 when the run completed (whatever the tunnels' results), 2 on bad usage/input.
"""

import argparse
import asyncio
import base64
import math
import os
import resource
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
INIT_LEN, RESP_LEN, COOKIE_LEN = 148, 92, 64


def frame(op, payload):
    """One masked, final client frame."""
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", 0x80 | op, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
    key = os.urandom(4)
    # XOR with the repeated key, at C speed.
    k = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
    return hdr + key + masked


def record(datagram):
    return struct.pack("!H", len(datagram)) + datagram


def hostport(s, default_port):
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif s.count(":") == 1:
        host, port = s.split(":")
    else:
        host, port = s, ""
    return host, int(port) if port else default_port


def is_ip(host):
    return host.replace(".", "").isdigit() or ":" in host


class Tunnel:
    def __init__(self, label, inits):
        self.label = label
        self.inits = inits
        self.senders = {i[4:8] for i in inits}
        self.status = None
        self.latency_ms = None
        self.records = 0
        self.cookie = False
        self.reader = self.writer = None


class Pacer:
    """At most `rate` starts per second (0 = no cap)."""

    def __init__(self, rate):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self):
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            if self.next > now:
                await asyncio.sleep(self.next - now)
            self.next = max(now, self.next) + self.interval


class Load:
    def __init__(self, a, tunnels):
        self.a = a
        self.tunnels = tunnels
        u = urlsplit(a.url)
        if u.scheme not in ("ws", "wss"):
            raise SystemExit("jitload: URL must be ws:// or wss://")
        self.tls = u.scheme == "wss"
        self.host, self.port = hostport(u.netloc, 443 if self.tls else 80)
        self.netloc = u.netloc
        self.path = (u.path or "/") + ("?" + u.query if u.query else "")
        if a.proxy:
            self.th, self.tp = hostport(a.proxy, 3128)
        elif a.connect_to:
            self.th, self.tp = hostport(a.connect_to, self.port)
        else:
            self.th, self.tp = self.host, self.port
        self.local = (a.bind, 0) if a.bind else None
        self.ctx = None
        if self.tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
        self.sni = None if is_ip(self.host) else self.host
        self.opening = asyncio.Semaphore(a.inflight)
        self.closing = asyncio.Semaphore(a.inflight)
        self.pacer = Pacer(a.rate)
        self.opened = 0
        self.attempted = 0
        self.all_attempted = asyncio.Event()
        self.all_done = asyncio.Event()
        self.done = 0
        self.t_first = self.t_last_open = None
        self.wall_start = self.wall_opened = self.wall_sent = None
        self.sent = 0
        self.t0 = None          # --pace: when every tunnel is open
        self.index = {id(t): k for k, t in enumerate(tunnels)}
        self.writes = 0
        self.t_first_write = self.t_last_write = None
        self.late_s = 0.0

    async def read_head(self, reader):
        head = await reader.readuntil(b"\r\n\r\n")
        return head.decode("latin-1")

    async def open(self, t):
        """TCP (+ CONNECT) + TLS + upgrade; raises on failure."""
        if self.a.proxy:
            reader, writer = await asyncio.open_connection(self.th, self.tp,
                                                           local_addr=self.local)
            hp = "[%s]:%d" % (self.host, self.port) if ":" in self.host else \
                "%s:%d" % (self.host, self.port)
            writer.write(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (hp, hp)).encode())
            line = (await self.read_head(reader)).split("\r\n", 1)[0]
            if line.split(" ")[1:2] != ["200"]:
                raise ConnectionError("proxy: " + line)
            if self.tls:
                await writer.start_tls(self.ctx, server_hostname=self.sni)
        else:
            reader, writer = await asyncio.open_connection(
                self.th, self.tp, ssl=self.ctx, server_hostname=self.sni if self.tls else None,
                local_addr=self.local)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ["GET %s HTTP/1.1" % self.path, "Host: %s" % self.netloc, "Upgrade: websocket",
               "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
               "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: wgws"]
        writer.write(("\r\n".join(req) + "\r\n\r\n").encode())
        head = await self.read_head(reader)
        status = head.split("\r\n", 1)[0].split(" ")
        if len(status) < 2 or status[1] != "101":
            writer.close()
            raise ConnectionError("upgrade: " + " ".join(status[1:2] or ["?"]))
        t.reader, t.writer = reader, writer

    async def read_frame(self, reader):
        b0, b1 = await reader.readexactly(2)
        op, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        if b1 & 0x80:  # a server must not mask; unmask anyway
            key = await reader.readexactly(4)
            p = await reader.readexactly(n)
            return op, bytes(b ^ key[i & 3] for i, b in enumerate(p))
        return op, await reader.readexactly(n)

    async def receive(self, t, t_sent):
        """Records until a response for t's initiations; sets t.status."""
        buf = b""
        while True:
            op, payload = await self.read_frame(t.reader)
            if op == OP_PING:
                t.writer.write(frame(OP_PONG, payload))
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else "none"
                t.status = "closed:%s" % code
                return
            if op not in (OP_BIN, OP_TEXT, OP_CONT):
                continue
            buf += payload
            while len(buf) >= 2:
                n = struct.unpack("!H", buf[:2])[0]
                if len(buf) < 2 + n:
                    break
                d, buf = buf[2:2 + n], buf[2 + n:]
                if n == 0:
                    continue
                t.records += 1
                if n == RESP_LEN and d[0] == 2 and d[8:12] in t.senders:
                    t.latency_ms = (time.monotonic() - t_sent[0]) * 1000.0
                    t.status = "response"
                    return
                if n == COOKIE_LEN and d[0] == 3 and d[4:8] in t.senders:
                    t.cookie = True

    async def run_one(self, t):
        try:
            async with self.opening:
                await self.pacer.wait()
                if self.t_first is None:
                    self.t_first = time.monotonic()
                try:
                    await asyncio.wait_for(self.open(t), self.a.open_timeout)
                    self.opened += 1
                    self.t_last_open = time.monotonic()
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                        asyncio.LimitOverrunError, ssl.SSLError, ConnectionError) as e:
                    t.status = "error:%s" % (type(e).__name__ if not str(e) or
                                             isinstance(e, asyncio.TimeoutError)
                                             else str(e).replace(" ", "_")[:60])
            self.attempted += 1
            if self.attempted == len(self.tunnels):
                self.all_attempted.set()
                self.wall_opened = time.time()
                self.t0 = time.monotonic()
            if t.status:
                return
            if self.a.barrier:
                await self.all_attempted.wait()
            await self.exchange(t)
        finally:
            self.done += 1
            if self.done == len(self.tunnels):
                self.all_done.set()
            # Keep the tunnel open until every tunnel has its result: closing one does
            # not disturb the others' measurements. Then close them in --inflight sized
            # groups 10 ms apart, as they were opened, not all in one instant.
            if t.writer:
                await self.all_done.wait()
                async with self.closing:
                    t.writer.close()
                    await asyncio.sleep(0.01)

    def wrote(self, n=1):
        """Counts n initiations about to be written; returns the time."""
        now = time.monotonic()
        self.writes += n
        if self.t_first_write is None:
            self.t_first_write = now
        self.t_last_write = now
        return now

    async def exchange(self, t):
        t_sent = [0.0]
        # --pace: this tunnel's place in each period (see the header).
        offset = self.index[id(t)] / len(self.tunnels) if self.a.pace else 0.0
        rx = asyncio.ensure_future(self.receive(t, t_sent))
        try:
            if self.a.batch:
                t_sent[0] = self.wrote(len(t.inits))
                t.writer.write(frame(OP_BIN, b"".join(record(i) for i in t.inits)))
            else:
                for k, i in enumerate(t.inits):
                    if self.a.pace:
                        due = self.t0 + (k + offset) * self.a.gap / 1000.0
                        wait = due - time.monotonic()
                        if wait > 0:
                            await asyncio.sleep(wait)
                        self.late_s = max(self.late_s, time.monotonic() - due)
                    elif k and self.a.gap:
                        await asyncio.sleep(self.a.gap / 1000.0)
                    if rx.done():
                        break
                    t_sent[0] = self.wrote()
                    t.writer.write(frame(OP_BIN, record(i)))
            await t.writer.drain()
            self.sent += 1
            if self.sent == self.opened:
                self.wall_sent = time.time()
            await asyncio.wait_for(asyncio.shield(rx), self.a.timeout)
        except asyncio.TimeoutError:
            t.status = "cookie" if t.cookie else "none"
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
            t.status = t.status or "closed:%s" % type(e).__name__
        finally:
            if not rx.done():
                rx.cancel()
                try:
                    await rx
                except (asyncio.CancelledError, Exception):
                    pass
            elif not rx.cancelled() and rx.exception() and not t.status:
                t.status = "closed:%s" % type(rx.exception()).__name__

    async def run(self):
        self.wall_start = time.time()
        await asyncio.gather(*(self.run_one(t) for t in self.tunnels))


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    # nearest rank
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, need)
    if hard != resource.RLIM_INFINITY and want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            want = hard
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def read_tunnels(f):
    tunnels = []
    for no, line in enumerate(f, 1):
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if len(w) < 2:
            raise SystemExit("jitload: line %d: expected LABEL HEX [HEX...]" % no)
        try:
            inits = [bytes.fromhex(h) for h in w[1:]]
        except ValueError:
            raise SystemExit("jitload: line %d: bad hex" % no)
        for i in inits:
            if len(i) != INIT_LEN or i[0] != 1:
                raise SystemExit("jitload: line %d: not a 148-byte initiation" % no)
        tunnels.append(Tunnel(w[0], inits))
    return tunnels


def fmt(v):
    return "-" if v is None else "%.2f" % v


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("url", help="wss://HOST[:PORT]/PATH (or ws://)")
    p.add_argument("file", nargs="?", help="tunnels, one per line (default stdin)")
    p.add_argument("--connect-to", metavar="HOST[:PORT]",
                   help="open TCP here instead of the URL's host (Host and SNI stay the URL's)")
    p.add_argument("--proxy", metavar="HOST:PORT", help="HTTP CONNECT proxy")
    p.add_argument("--bind", metavar="ADDR",
                   help="the local address to connect from (default: the kernel's choice)")
    p.add_argument("--inflight", type=int, default=64, metavar="N",
                   help="tunnels in TCP/TLS/upgrade at once (default 64)")
    p.add_argument("--rate", type=float, default=0, metavar="R",
                   help="new connections per second at most (default 0: no cap)")
    p.add_argument("--open-timeout", type=float, default=10, metavar="S",
                   help="time allowed to open one tunnel (default 10)")
    p.add_argument("--timeout", type=float, default=5, metavar="S",
                   help="wait this long after the last initiation for a response (default 5)")
    p.add_argument("--gap", type=float, default=0, metavar="MS",
                   help="pause between the initiations of one tunnel (default 0)")
    p.add_argument("--pace", action="store_true",
                   help="send on a fixed schedule: tunnel k of N at (j + k/N) x --gap after "
                        "all are open (needs --gap and the barrier)")
    p.add_argument("--batch", action="store_true",
                   help="all of a tunnel's initiations in one message")
    p.add_argument("--no-barrier", dest="barrier", action="store_false",
                   help="send as soon as a tunnel is open, not when all are")
    p.add_argument("--out", metavar="FILE", help="per-tunnel results")
    a = p.parse_args()
    if a.inflight < 1:
        p.error("--inflight must be >= 1")
    if a.pace and (a.gap <= 0 or a.batch or not a.barrier):
        p.error("--pace needs --gap > 0, and neither --batch nor --no-barrier")

    with (open(a.file) if a.file else sys.stdin) as f:
        tunnels = read_tunnels(f)
    if not tunnels:
        raise SystemExit("jitload: no tunnels")
    raise_nofile(len(tunnels) + 64)

    load = Load(a, tunnels)
    t0 = time.monotonic()
    asyncio.run(load.run())
    wall = time.monotonic() - t0

    lat = sorted(t.latency_ms for t in tunnels if t.status == "response")
    count = {}
    for t in tunnels:
        count[t.status] = count.get(t.status, 0) + 1
    failed = sum(v for k, v in count.items() if k not in ("response", "cookie", "none"))
    open_s = (load.t_last_open - load.t_first) if load.opened and load.t_first else 0.0
    rate = load.opened / open_s if open_s > 0 else 0.0
    if a.out:
        with open(a.out, "w") as o:
            for t in tunnels:
                o.write("%s %s %s %d\n" % (t.label, t.status, fmt(t.latency_ms), t.records))
    other = ", ".join("%s %d" % kv for kv in sorted(count.items())
                      if kv[0] not in ("response", "cookie", "none"))
    print("%d tunnels in %.2f s: %d opened in %.2f s (%.0f/s), %d responses, %d cookie replies, "
          "%d without an answer%s" % (len(tunnels), wall, load.opened, open_s, rate,
                                      count.get("response", 0), count.get("cookie", 0),
                                      count.get("none", 0), "; " + other if other else ""))
    print("phases (unix time): start %s, all open %s, all sent %s, end %.3f" % (
        *("%.3f" % w if w else "-" for w in (load.wall_start, load.wall_opened, load.wall_sent)),
        time.time()))
    wspan = (load.t_last_write - load.t_first_write) if load.writes else 0.0
    print("sent %d initiations in %.3f s (%.0f/s), at most %.1f ms behind schedule" % (
        load.writes, wspan, load.writes / wspan if wspan > 0 else 0.0, load.late_s * 1000.0))
    print("handshake latency (ms): p50 %s  p99 %s  max %s" % (
        fmt(percentile(lat, 50)), fmt(percentile(lat, 99)), fmt(lat[-1] if lat else None)))
    print("summary tunnels=%d open=%d responses=%d cookies=%d none=%d failed=%d open_s=%.3f "
          "open_rate=%.0f p50_ms=%s p99_ms=%s max_ms=%s" % (
              len(tunnels), load.opened, count.get("response", 0), count.get("cookie", 0),
              count.get("none", 0), failed, open_s, rate, fmt(percentile(lat, 50)),
              fmt(percentile(lat, 99)), fmt(lat[-1] if lat else None)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
