#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""fakeprov: a stand-in for wgws-provisioner's JIT socket, to test the relay's holding (stdlib).

Listens on a unix SOCK_SEQPACKET socket (mode 0666, so a relay that dropped to another user
can reconnect), accepts any number of relays, reads struct jit_request (common/jitproto.h:
208 bytes) and answers struct jit_answer (48 bytes: the id, the verdict, a key) with the same id. No crypto: what to
answer is written in the initiation's sender index (bytes 4..7 of the datagram), unless a
flag fixes it:
  byte 4  the verdict: 1 installed, 2 live, 3 unknown, 4 refused, 5 error, 0 = never answer,
          0xff = answer garbage (byte 6 says which: 0 too short, 1 too long, 2 wrong magic,
          3 verdict out of range)
  byte 5  delay before answering, in tenths of a second (other requests are not delayed)
A malformed request closes that relay's connection, as the real provisioner does.

Output, one flushed line per event:
  listening PATH
  accept uid=U pid=P
With --listen-as USER it binds as root and listens as USER: the credentials a connecting
relay reads (SO_PEERCRED) are those of listen().
  request id=N source=ADDR:PORT client=ADDR:PORT sender=HEX8
  answer id=N verdict=NAME            (or "garbage id=N kind=K", "silent id=N")
  malformed N bytes                   (then the connection is closed)
  closed
"""

import argparse
import heapq
import os
import selectors
import signal
import socket
import base64
import hashlib
import struct
import sys
import time

REQ_MAGIC, ANS_MAGIC = 0x51544A57, 0x41544A57
REQ = struct.Struct("<IIQ20s20s148s4s")
ANS = struct.Struct("<IIQ32s")
VERDICTS = {"installed": 1, "live": 2, "unknown": 3, "refused": 4, "error": 5}
NAMES = {v: k for k, v in VERDICTS.items()}
assert REQ.size == 208 and ANS.size == 48


def say(*words):
    print(*words, flush=True)


def addr(raw):
    fam, = struct.unpack("=H", raw[:2])  # host order
    port, = struct.unpack("!H", raw[2:4])  # network order
    if fam == socket.AF_INET:
        return "%s:%d" % (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if fam == socket.AF_INET6:
        return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[4:20]), port)
    return "none"


def garbage(kind, rid):
    if kind == 0:
        return ANS.pack(ANS_MAGIC, 1, rid, b"")[:8]
    if kind == 1:
        return ANS.pack(ANS_MAGIC, 1, rid, b"") + b"\0"
    if kind == 2:
        return ANS.pack(REQ_MAGIC, 1, rid, b"")
    return ANS.pack(ANS_MAGIC, 99, rid, b"")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("path", help="socket path (a stale one is removed)")
    p.add_argument("--verdict", choices=sorted(VERDICTS) + ["silent"],
                   help="answer this to every request instead of reading byte 4")
    p.add_argument("--delay", type=float, metavar="S",
                   help="delay every answer by S seconds instead of reading byte 5")
    p.add_argument("--listen-as", metavar="USER",
                   help="bind as the caller (root), then listen as USER: a socket at the "
                        "relay's path served by someone else (SO_PEERCRED says USER)")
    a = p.parse_args()

    try:
        os.unlink(a.path)
    except FileNotFoundError:
        pass
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    lsock.bind(a.path)
    os.chmod(a.path, 0o666)
    if a.listen_as:
        import pwd
        pw = pwd.getpwnam(a.listen_as)
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    lsock.listen(16)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ)
    pending = []  # (due, seq, conn, bytes, line)
    seq = 0
    stop = False

    def on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say("listening", a.path)

    def drop(c):
        sel.unregister(c)
        c.close()
        say("closed")

    while not stop:
        timeout = 0.2
        if pending:
            timeout = max(0.0, min(timeout, pending[0][0] - time.monotonic()))
        for key, _ in sel.select(timeout):
            s = key.fileobj
            if s is lsock:
                c, _ = lsock.accept()
                cred = c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                pid, uid, _ = struct.unpack("iII", cred)
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                say("accept uid=%d pid=%d" % (uid, pid))
                continue
            try:
                m = s.recv(REQ.size + 1)
            except BlockingIOError:
                continue
            except OSError:
                m = b""
            if not m:
                drop(s)
                continue
            if len(m) != REQ.size or REQ.unpack(m)[0] != REQ_MAGIC:
                say("malformed %d bytes" % len(m))
                drop(s)
                continue
            _, _, rid, src, cli, init, _ = REQ.unpack(m)
            say("request id=%d source=%s client=%s sender=%s" % (rid, addr(src), addr(cli),
                                                                init[4:8].hex()))
            v = VERDICTS.get(a.verdict, 0) if a.verdict else init[4]
            delay = a.delay if a.delay is not None else init[5] / 10
            if v == 0:
                say("silent id=%d" % rid)
                continue
            if v == 0xFF:
                out, line = garbage(init[6], rid), "garbage id=%d kind=%d" % (rid, init[6])
            else:
                # a stand-in for the peer's key: no crypto here, a hash of the initiation
                key = hashlib.sha256(init).digest()
                out = ANS.pack(ANS_MAGIC, v, rid, key)
                line = "answer id=%d verdict=%s key=%s" % (rid, NAMES.get(v, str(v)),
                                                           base64.b64encode(key).decode())
            seq += 1
            heapq.heappush(pending, (time.monotonic() + delay, seq, s, out, line))
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, c, out, line = heapq.heappop(pending)
            if c.fileno() < 0:
                continue  # that relay went away
            try:
                c.send(out)
                say(line)
            except OSError as e:
                say("send failed: %s" % e)
    try:
        os.unlink(a.path)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    sys.exit(main())
