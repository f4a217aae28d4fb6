#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small client of wgws-provisioner's HTTP API on a unix socket, for the e2e crash test.

  prov_client.py create SOCK OUT SECONDS [MAX [DELETE_EVERY]]
      POST /v1/peers {} one after another on a keep-alive connection for SECONDS (or MAX
      creates); every 201 appends "C KEY ADDR4 ADDR6" to OUT, flushed at once, so the file
      holds exactly what the daemon acknowledged even if this process is killed. With
      DELETE_EVERY n, every n-th create is followed by a DELETE of the peer created n/2
      creates before; a 200 appends "D KEY ADDR4 ADDR6". Stops when the daemon cannot be
      reached any more. Prints "acked N deleted D other M lost L".
  prov_client.py verify SOCK DEVICE RECORDS...
      Every acknowledged create not deleted later: GET 200 with the same addresses; every
      acknowledged delete: GET 404, and its addresses held by no peer (hold-down). The whole
      listing (following "next"): no IPv4 or IPv6 address twice, and DEVICE (the output of
      `wg show IF allowed-ips`; "-" skips this) has exactly the listed peers with exactly
      their allowed IPs. Prints the numbers; exit 1 on any mismatch (each one printed).
  prov_client.py pipeline SOCK
      Two requests in one write on one connection (HTTP/1.1 pipelining): GET /healthz, then
      POST /v1/peers {}. Prints the status line of every response that came within 3 s;
      exit 0 when they are "200" and "201", in that order.
  prov_client.py db FILE
      Opens the SQLite file read-only: PRAGMA integrity_check, no address twice, no address
      in use on the free list or above the allocator's high-water mark, the trigger-kept
      counts equal the real ones. Prints "stored N installed M"; exit 1 on any problem.
"""
import http.client
import json
import re
import socket
import sqlite3
import sys
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("prov", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def urlkey(k):
    return k.replace("+", "-").replace("/", "_")


class Api:
    def __init__(self, path):
        self.path = path
        self.conn = None

    def call(self, method, url, body=None):
        """(status, parsed JSON or None); raises OSError/HTTPException when unreachable."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = UnixHTTPConnection(self.path)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self.conn.request(method, url, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                try:
                    return r.status, json.loads(data) if data else None
                except ValueError:
                    return r.status, None
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                # A keep-alive connection the server closed between requests: retry once on
                # a new one (for a POST that may create a second, unacknowledged peer: fine).
                if attempt:
                    raise
        raise AssertionError("unreachable")


def cmd_create(sock, out, seconds, limit, delete_every):
    api = Api(sock)
    acked = deleted = other = lost = 0
    made = []
    end = time.monotonic() + seconds
    with open(out, "a") as f:
        while time.monotonic() < end and acked < limit and other <= 50:
            try:
                st, j = api.call("POST", "/v1/peers", b"{}")
                if st != 201:
                    other += 1
                    continue
                a = j["addresses"]
                rec = "%s %s %s" % (j["public_key"], a[0], a[1])
                f.write("C %s\n" % rec)
                f.flush()
                acked += 1
                made.append(rec)
                if delete_every and acked % delete_every == 0:
                    victim = made[-1 - delete_every // 2]
                    st, j = api.call("DELETE", "/v1/peers/" + urlkey(victim.split()[0]))
                    if st != 200:
                        other += 1
                        continue
                    f.write("D %s\n" % victim)
                    f.flush()
                    deleted += 1
            except (OSError, http.client.HTTPException):
                lost += 1
                break
    print("acked %d deleted %d other %d lost %d" % (acked, deleted, other, lost))


def cmd_verify(sock, device, files):
    api = Api(sock)
    bad = []
    live, gone = {}, {}
    for fn in files:
        for line in open(fn):
            op, key, a4, a6 = line.split()
            if op == "C":
                live[key] = [a4, a6]
            else:
                live.pop(key, None)
                gone[key] = [a4, a6]
    for key, addrs in live.items():
        st, j = api.call("GET", "/v1/peers/" + urlkey(key))
        if st != 200:
            bad.append("MISSING %s (%s): HTTP %d %s" % (key, addrs[0], st, j))
        elif j["addresses"] != addrs:
            bad.append("MOVED %s: acknowledged %s, now %s" % (key, addrs, j["addresses"]))
    for key, addrs in gone.items():
        st, j = api.call("GET", "/v1/peers/" + urlkey(key))
        if st != 404:
            bad.append("UNDELETED %s (%s): HTTP %d" % (key, addrs[0], st))
    held = {a: k for k, addrs in gone.items() for a in addrs}
    seen, listed, after = {}, {}, None
    while True:
        url = "/v1/peers?limit=1000" + ("&after=" + after if after else "")
        st, j = api.call("GET", url)
        if st != 200:
            bad.append("LIST %s: HTTP %d %s" % (url, st, j))
            break
        for p in j["peers"]:
            listed[p["public_key"]] = set(p["allowed_ips"])
            for a in p["addresses"]:
                if a in seen:
                    bad.append("TWICE %s: %s and %s" % (a, seen[a], p["public_key"]))
                seen[a] = p["public_key"]
                if a in held and held[a] != p["public_key"]:
                    bad.append("REUSED %s of deleted %s by %s within the hold-down"
                               % (a, held[a], p["public_key"]))
        after = j["next"]
        if not after:
            break
    ndev = -1
    if device != "-":
        dev = {}
        for line in open(device):
            f = line.split()
            if f:
                dev[f[0]] = set(x for x in f[1:] if x != "(none)")
        ndev = len(dev)
        for k in sorted(set(dev) | set(listed)):
            if k not in dev:
                bad.append("NOT IN DEVICE %s" % k)
            elif k not in listed:
                bad.append("DEVICE ONLY %s" % k)
            elif dev[k] != listed[k]:
                bad.append("ALLOWED IPS %s: device %s, store %s" % (k, sorted(dev[k]), sorted(listed[k])))
    for b in bad[:20]:
        print(b)
    print("acknowledged %d present %d deleted %d absent %d listed %d device %d problems %d"
          % (len(live), len(live) - sum(b.startswith(("MISSING", "MOVED")) for b in bad),
             len(gone), len(gone) - sum(b.startswith("UNDELETED") for b in bad),
             len(listed), ndev, len(bad)))
    return 1 if bad else 0


def cmd_db(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    bad = []
    ic = [r[0] for r in db.execute("PRAGMA integrity_check")]
    if ic != ["ok"]:
        bad.append("integrity_check: %s" % "; ".join(ic[:5]))
    q = {
        "an IPv4 address twice": "SELECT count(*) FROM (SELECT ip4 FROM peer WHERE ip4 IS NOT NULL"
        " GROUP BY ip4 HAVING count(*) > 1)",
        "an IPv6 address twice": "SELECT count(*) FROM (SELECT ip6 FROM peer WHERE ip6 IS NOT NULL"
        " GROUP BY ip6 HAVING count(*) > 1)",
        "an address in use on the free list": "SELECT count(*) FROM peer JOIN ip4_free ON"
        " peer.ip4 = ip4_free.ip",
        "an address in use above the high-water mark": "SELECT count(*) FROM peer, alloc WHERE"
        " alloc.id = 1 AND peer.ip4 >= alloc.next_ip4",
        "alloc.stored != count(peer)": "SELECT (SELECT stored FROM alloc WHERE id = 1) !="
        " (SELECT count(*) FROM peer)",
        "alloc.installed != count(installed peers)": "SELECT (SELECT installed FROM alloc WHERE"
        " id = 1) != (SELECT count(*) FROM peer WHERE installed_at IS NOT NULL)",
    }
    for what, sql in q.items():
        v = db.execute(sql).fetchone()[0]
        if v:
            bad.append("%s (%d)" % (what, v))
    stored = db.execute("SELECT count(*) FROM peer").fetchone()[0]
    inst = db.execute("SELECT count(*) FROM peer WHERE installed_at IS NOT NULL").fetchone()[0]
    db.close()
    for b in bad:
        print("DB: " + b)
    print("integrity %s stored %d installed %d problems %d" % (ic[0], stored, inst, len(bad)))
    return 1 if bad else 0


def cmd_pipeline(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(sock)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: prov\r\n\r\n"
              b"POST /v1/peers HTTP/1.1\r\nHost: prov\r\nContent-Type: application/json\r\n"
              b"Content-Length: 2\r\n\r\n{}")
    got = b""
    statuses = []
    try:
        while len(statuses) < 2:
            d = s.recv(65536)
            if not d:
                break
            got += d
            statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3})", got)]
    except socket.timeout:
        pass
    s.close()
    bodies = re.findall(rb'\{"error":"[^"]*"\}', got)
    closes = b"connection: close" in got.lower()
    print("statuses %s%s%s" % (" ".join(map(str, statuses)) or "none",
                               " (connection: close)" if closes else "",
                               (" errors " + " ".join(b.decode() for b in bodies)) if bodies else ""))
    # One request per connection: the first is answered and says so; the rest is discarded
    # (RFC 9112 §9.3.2: the client retries what a closing server left unanswered). Two
    # answers are fine too; a wrong answer to the second request is not.
    return 0 if statuses in ([200], [200, 201]) and (closes or statuses == [200, 201]) else 1


def main(argv):
    if 5 <= len(argv) <= 7 and argv[1] == "create":
        cmd_create(argv[2], argv[3], float(argv[4]), int(argv[5]) if len(argv) > 5 else 10**9,
                   int(argv[6]) if len(argv) > 6 else 0)
        return 0
    if len(argv) >= 5 and argv[1] == "verify":
        return cmd_verify(argv[2], argv[3], argv[4:])
    if len(argv) == 3 and argv[1] == "pipeline":
        return cmd_pipeline(argv[2])
    if len(argv) == 3 and argv[1] == "db":
        return cmd_db(argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
