#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of the libFuzzer harnesses, tests/fuzz/corpus/NAME/, from the
inputs below: a few valid ones (real ones where the tree has them: the UAPI replies of
tests/unit/data/uapi, the wireguard-go initiations of shared/vectors) and edge cases. The
files are committed; run this again after changing a harness's input format:

    tests/fuzz/mkcorpus.py [NAME...]

Each harness's comment says how it reads its input; the builders here follow it."""
import os
import shutil
import struct
import sys

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(TOP, "tests", "fuzz", "corpus")

# shared/vectors/wireguard-go-initiations.txt: three initiations from wireguard-go to one
# responder (throw-away test keys).
RESPONDER_PRIVATE = bytes.fromhex(
    "886b426ab5192aa47d6bd81ce1e8646c33546d68a6f167c0be2d566b4818777f")
INITIATIONS = [bytes.fromhex(h) for h in (
    "01000000d3b72c11d5a1e2662f294fd0588a5c2db348afab37a7ee7463653438ded521257ea16474b816b377"
    "3ddb9d9539cb1d01071b5a97025a601723cebd53865a8a74fdc41850ac29cfff9f1f0a371da0ee035be90e06"
    "e023aed0b7f0eedbdcf98761c00e09b45039c104b2e9938e832dc8147765711e314a1e9b0c52b9b1d11367bd"
    "00000000000000000000000000000000",
    "01000000a1be089b2b61e5854640baa804fb315ae6e08f594a70150cb21a535422b96fab7bbbf11f99c036fd"
    "50c243e9fa6f73db59b05649f2b830950a7e0f92c62e900cb4995c46f8832b282cad6552e322607bd96f8efc"
    "2f9bd329c20dd90adb3fcf58ab0a977c8a7e85976aa79fa38b64b33ba160b543da738acb1b8f1070169693c8"
    "00000000000000000000000000000000",
    "01000000737361c90e407bab9a33aa74fe80a8e34643f2abc847d83f0409f462d89c62d356bf981757c6e3d7"
    "83473e29fe25f70955adfacb123129d3b213651459110245e8e6a1023a5b2125870a3009bddb5d5dfa55b3f8"
    "d37a1a72260fdb4ae0a6c9f5fd2769520866c3d96ff4df1f056a8b34d25f03cce6abd15ac450e8809ee1a3fa"
    "00000000000000000000000000000000",
)]

SEEDS = {}


def seed(name):
    """Register a function returning {file name: bytes} for harness NAME."""
    def register(fn):
        SEEDS[name] = fn
        return fn
    return register


def rec(payload):
    """One wgws record: u16 big-endian length, then the datagram."""
    return struct.pack(">H", len(payload)) + payload


@seed("frame")
def frame_seeds():
    data = b"\x04\x00\x00\x00" + bytes(range(60))  # a WireGuard data message
    stream = rec(INITIATIONS[0]) + rec(b"") + rec(data) + rec(b"") + rec(INITIATIONS[1])
    return {
        # byte 0: max_len (0x83: 1549 bytes), byte 1: feed size and buffer swapping
        "records-whole": b"\x83\x3f" + stream,
        "records-bytewise-swap": b"\x83\x40" + stream,
        "records-straddle": b"\x83\x06" + stream,
        "keepalives-only": b"\x00\x00" + rec(b"") * 4,
        "over-max-len": b"\x0f\x3f" + rec(b"x" * 15) + rec(b"y" * 16) + rec(b"z"),
        "max-protocol-len": b"\xff\x7f" + b"\xff\xff" + b"\x55" * 300,
        "cut-mid-header": b"\x83\x01" + rec(data) + b"\x00",
        "cut-mid-body": b"\x83\x45" + rec(data)[:30],
    }


@seed("conf")
def conf_seeds():
    lines = [
        "[Relay]", "Listen = 127.0.0.1:8443", "MaxConns = 10   # after a blank: a comment",
        "max_record = 2048", "Token = ab#cd", "# a comment", "", "   ", "[ Shim ]",
        "Relay = wss://gw.example.com/wg\n", "Pool6 = fd00:64::/64", "Key =", "= value",
        "[Provisioner", "Jit = yes\r\n", "\tKeepalive\t=\t10\t",
    ]
    return {"line-%02d" % i: l.encode() for i, l in enumerate(lines)}


def ws_frame(b0, payload, mask=None):
    """A frame as the relay sends it (unmasked unless mask is given)."""
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, n | (0x80 if mask else 0)])
    elif n < 65536:
        hdr = bytes([b0, 126 | (0x80 if mask else 0)]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, 127 | (0x80 if mask else 0)]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        hdr += mask
    return hdr + payload


@seed("ws")
def ws_seeds():
    recs = rec(INITIATIONS[0]) + rec(b"") + rec(b"\x04\x00\x00\x00" + bytes(28))
    return {
        # byte 0: max_frame (0 125, 1 1024, 2 65535, 3 16 MiB), byte 1: feed size - 1
        "binary-records": b"\x03\xff" + ws_frame(0x82, recs),
        "binary-16bit-len-feed7": b"\x03\x06" + ws_frame(0x82, bytes(range(200))),
        "binary-64bit-len-cut": b"\x03\x10" + ws_frame(0x82, bytes(70000))[:40],
        "fragmented-with-ping": b"\x02\x02" + ws_frame(0x02, b"abc") + ws_frame(0x89, b"hi") +
        ws_frame(0x00, b"def") + ws_frame(0x80, b"gh") + ws_frame(0x8a, b""),
        "close-1000": b"\x03\xff" + ws_frame(0x82, b"x") + ws_frame(0x88, b"\x03\xe8bye"),
        "close-no-status": b"\x03\x00" + ws_frame(0x88, b""),
        "close-one-byte": b"\x03\xff" + ws_frame(0x88, b"\x03"),
        "ping-125": b"\x03\x1f" + ws_frame(0x89, bytes(range(125))),
        "text": b"\x03\xff" + ws_frame(0x81, b"hello"),
        "masked": b"\x03\xff" + ws_frame(0x82, b"abcd", mask=b"\x01\x02\x03\x04"),
        "reserved-bits": b"\x03\xff" + ws_frame(0xc2, b"abcd"),
        "non-minimal-len": b"\x03\xff" + b"\x82\x7e\x00\x05hello",
        "over-max-frame": b"\x00\xff" + ws_frame(0x82, bytes(126)),
        "unknown-opcode": b"\x03\xff" + ws_frame(0x83, b""),
        "cont-without-start": b"\x03\xff" + ws_frame(0x80, b"zz"),
    }


ACCEPT = b"s3pPLMBiTxaQ9kYGJzPUgmJRY8o="  # for the key of RFC 6455's example


@seed("http")
def http_seeds():
    up = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\nSec-WebSocket-Protocol: wgws\r\n\r\n")
    lws = (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
           b"sec-websocket-accept: " + ACCEPT + b"\r\nsec-websocket-protocol: wgws\r\n\r\n")
    return {
        "upgrade-ok-then-frame": up + ws_frame(0x82, rec(b"\x04\x00\x00\x00" + bytes(28))),
        "upgrade-ok-lws": lws,
        "upgrade-tokens": up.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade ")
        .replace(b"Upgrade: websocket", b"Upgrade: WebSocket"),
        "upgrade-extension": up[:-2] + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        "upgrade-wrong-accept": up.replace(ACCEPT, b"x" * 28),
        "upgrade-no-protocol": up.replace(b"Sec-WebSocket-Protocol: wgws\r\n", b""),
        "upgrade-folded-line": up[:-2] + b" folded\r\n\r\n",
        "refused-403": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden",
        "connect-200": b"HTTP/1.1 200 Connection established\r\n\r\n",
        "connect-squid": b"HTTP/1.0 200 OK\r\nProxy-agent: squid/5.7\r\n\r\n\x16\x03\x03",
        "connect-407": b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b"Proxy-Authenticate: Basic realm=\"corp\"\r\n\r\n",
        "status-no-reason": b"HTTP/1.1 204\r\n\r\n",
        "not-http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "no-end": b"HTTP/1.1 200 OK\r\nServer: x\r\n",
    }


@seed("url")
def url_seeds():
    inputs = [
        "wss://gw.example.com/wg", "wss://gw.example.com", "wss://[2001:db8::1]:8443/t?x=1",
        "wss://10.0.0.1:443/", "wss://h?x", "WSS://GW.Example.COM:0443/a/b", "ws://gw/wg",
        "wss://user@gw/wg", "wss://[fe80::1%25eth0]/wg", "wss://gw.example.com/wg#frag",
        "http://user:p%40ss@proxy.corp:3128/\nproxy.corp", "http://u@[::1]:8080",
        "proxy.corp:3128", "https://proxy.corp", "http://%00@proxy", "socks5://proxy:1080",
        "localhost,.example.com, 10.0.0.1:80,[::1]:443\ngw.example.com",
        "*\nanything.example", "example.com.\nGW.EXAMPLE.COM.", "::1,10.0.0.1\n::1",
        "sha256//" + "A" * 43 + "=", "sha256//" + "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    ]
    return {"input-%02d" % i: t.encode() for i, t in enumerate(inputs)}


KEY_B64 = "pQwOU9IJLBiFX11mvUjoqmNFLaO/kB4o4jCPpx6iQQc="  # the vectors' initiator


@seed("api")
def api_seeds():
    bodies = [
        '{}',
        '{"public_key": "%s"}' % KEY_B64,
        '{"public_key": "%s", "ttl_seconds": 3600, "name": "laptop \\u00e9",'
        ' "allowed_ips": ["192.168.7.0/24", "fd99::/64"]}' % KEY_B64,
        '{"public_key":"%s"}' % KEY_B64.replace("/", "_").rstrip("="),
        '{"name": "a", "name": "b"}',
        '{"ttl_seconds": 0}', '{"ttl_seconds": 315360001}', '{"ttl_seconds": 1.5}',
        '{"allowed_ips": ["10.64.1.0/24"]}', '{"allowed_ips": ["0.0.0.0/0"]}',
        '{"allowed_ips": ["192.168.7.1/24"]}', '{"allowed_ips": ["fd00:64::1/128"]}',
        '{"allowed_ips": ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16",'
        ' "10.5.0.0/16", "10.6.0.0/16", "10.7.0.0/16"]}',
        '{"name": "\\u0001"}', '{"name": "%s"}' % ("n" * 65), '{"public_key": "AAAA"}',
        '{"public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}',
        '{"colour": "blue"}', '[]', '"x"', '{"a', '[' * 100 + ']' * 100,
    ]
    return {"body-%02d" % i: b.encode() for i, b in enumerate(bodies)}


@seed("uapi")
def uapi_seeds():
    """The replies of wireguard-go the unit tests use, and boringtun's dialect."""
    data = os.path.join(TOP, "tests", "unit", "data", "uapi")
    out = {}
    for name in sorted(os.listdir(data)):
        if name.endswith(".txt"):
            with open(os.path.join(data, name), "rb") as f:
                out[name[:-4]] = f.read()
    key = "%064x"
    out["boringtun"] = (
        "own_public_key=8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f\n"
        "listen_port=51820\nfwmark=0\n"
        "public_key=e59f8598137a580f532139dd18e72e5e17bee74dfc6fef72739f7c6918796b78\n"
        "preshared_key=" + key % 7 + "\npersistent_keepalive_interval=25\n"
        "endpoint=[fe80::1%2]:51820\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n"
        "last_handshake_time_sec=30\nlast_handshake_time_nsec=5000\nrx_bytes=100\n"
        "tx_bytes=200\npublic_key=" + key % 9 + "\nrx_bytes=0\ntx_bytes=0\nerrno=0\n\n"
    ).encode()
    out["boringtun-errno"] = b"errno=22\n\n"
    out["errno-min"] = b"errno=-4095\n\n"
    out["bytes-after-end"] = b"listen_port=1\nerrno=0\n\nx"
    out["peer-key-before-peer"] = b"allowed_ip=10.0.0.1/32\nerrno=0\n\n"
    out["device-key-in-peer"] = ("public_key=" + key % 1 + "\nlisten_port=2\nerrno=0\n\n").encode()
    out["many-allowed"] = ("public_key=" + key % 1 + "\n" +
                           "".join("allowed_ip=10.0.%d.0/24\n" % i for i in range(12)) +
                           "errno=0\n\n").encode()
    return out


# Generic netlink as the kernel's WireGuard family sends a GET_DEVICE dump (linux/wireguard.h).
NL_FAMILY, NL_PORTID, NL_SEQ = 0x15, 1234, 3
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_MULTI, NLM_F_DUMP_INTR = 0x2, 0x10
NLA_F_NESTED = 0x8000
WG_CMD_GET_DEVICE = 0
(WGDEVICE_A_IFINDEX, WGDEVICE_A_IFNAME, WGDEVICE_A_PRIVATE_KEY, WGDEVICE_A_PUBLIC_KEY,
 WGDEVICE_A_FLAGS, WGDEVICE_A_LISTEN_PORT, WGDEVICE_A_FWMARK, WGDEVICE_A_PEERS) = range(1, 9)
(WGPEER_A_PUBLIC_KEY, WGPEER_A_PRESHARED_KEY, WGPEER_A_FLAGS, WGPEER_A_ENDPOINT,
 WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, WGPEER_A_LAST_HANDSHAKE_TIME, WGPEER_A_RX_BYTES,
 WGPEER_A_TX_BYTES, WGPEER_A_ALLOWEDIPS, WGPEER_A_PROTOCOL_VERSION) = range(1, 11)
WGALLOWEDIP_A_FAMILY, WGALLOWEDIP_A_IPADDR, WGALLOWEDIP_A_CIDR_MASK = 1, 2, 3


def nla(atype, payload):
    n = 4 + len(payload)
    return struct.pack("<HH", n, atype) + payload + bytes(-n % 4)


def nest(atype, *attrs):
    return nla(atype | NLA_F_NESTED, b"".join(attrs))


def nlmsg(mtype, payload, flags=NLM_F_MULTI, seq=NL_SEQ):
    return struct.pack("<IHHII", 16 + len(payload), mtype, flags, seq, NL_PORTID) + payload


def allowed_ip(cidr):
    import ipaddress
    net = ipaddress.ip_network(cidr)
    fam = 2 if net.version == 4 else 10
    return nest(0, nla(WGALLOWEDIP_A_FAMILY, struct.pack("<H", fam)),
                nla(WGALLOWEDIP_A_IPADDR, net.network_address.packed),
                nla(WGALLOWEDIP_A_CIDR_MASK, bytes([net.prefixlen])))


def wg_peer(key, cidrs, details=False):
    attrs = [nla(WGPEER_A_PUBLIC_KEY, bytes([key]) * 32)]
    if details:
        attrs += [
            nla(WGPEER_A_PRESHARED_KEY, bytes(32)),
            nla(WGPEER_A_ENDPOINT, struct.pack("<H", 2) + struct.pack(">H", 51820) +
                bytes([192, 0, 2, 1]) + bytes(8)),
            nla(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, struct.pack("<H", 25)),
            nla(WGPEER_A_LAST_HANDSHAKE_TIME, struct.pack("<qq", 1700000000, 5)),
            nla(WGPEER_A_RX_BYTES, struct.pack("<Q", 100)),
            nla(WGPEER_A_TX_BYTES, struct.pack("<Q", 200)),
            nla(WGPEER_A_PROTOCOL_VERSION, struct.pack("<I", 1)),
        ]
    attrs.append(nest(WGPEER_A_ALLOWEDIPS, *[allowed_ip(c) for c in cidrs]))
    return nest(0, *attrs)


def wg_device(peers, flags=NLM_F_MULTI, device=True, seq=NL_SEQ):
    attrs = [nla(WGDEVICE_A_IFINDEX, struct.pack("<I", 7))]
    if device:
        attrs += [nla(WGDEVICE_A_IFNAME, b"wg0\0"), nla(WGDEVICE_A_PRIVATE_KEY, RESPONDER_PRIVATE),
                  nla(WGDEVICE_A_PUBLIC_KEY, bytes(range(32))),
                  nla(WGDEVICE_A_LISTEN_PORT, struct.pack("<H", 51820)),
                  nla(WGDEVICE_A_FWMARK, struct.pack("<I", 0))]
    if peers is not None:
        attrs.append(nest(WGDEVICE_A_PEERS, *peers))
    return nlmsg(NL_FAMILY, bytes([WG_CMD_GET_DEVICE, 1, 0, 0]) + b"".join(attrs), flags, seq)


def nl_done(err=0):
    return nlmsg(NLMSG_DONE, struct.pack("<i", err))


def dgrams(*ds):
    """The harness's input: each datagram after its big-endian u16 length."""
    return b"".join(struct.pack(">H", len(d)) + d for d in ds)


@seed("wgnl")
def wgnl_seeds():
    p1 = wg_peer(0xa1, ["10.0.0.2/32", "fd00::2/128"], details=True)
    many = [wg_peer(0x10 + i, ["10.1.%d.0/24" % i, "10.2.%d.0/24" % i]) for i in range(20)]
    return {
        "one-datagram": dgrams(wg_device([p1, wg_peer(0xa2, ["10.0.1.0/24"])]) + nl_done()),
        "split-peer": dgrams(wg_device([p1, wg_peer(0xa2, ["10.0.1.0/24"])]),
                             wg_device([wg_peer(0xa2, ["10.0.2.0/24"]), wg_peer(0xa3, [])],
                                       device=False), nl_done()),
        "no-peers": dgrams(wg_device(None) + nl_done()),
        "twenty-peers": dgrams(wg_device(many[:10]), wg_device(many[10:], device=False),
                               nl_done()),
        "interrupted": dgrams(wg_device([p1], flags=NLM_F_MULTI | NLM_F_DUMP_INTR), nl_done()),
        "stale-first": dgrams(wg_device([p1], seq=NL_SEQ - 1) + wg_device([p1]), nl_done()),
        "refused": dgrams(nlmsg(NLMSG_ERROR, struct.pack("<i", -1) + bytes(16), 0)),
        "done-enodev": dgrams(wg_device([p1]), nl_done(-19)),
        "truncated": dgrams((wg_device([p1]) + nl_done())[:-6]),
        "no-done": dgrams(wg_device([p1])),
    }


def udp_to(port, payload, sport=40000):
    return struct.pack(">HHHH", sport, port, 8 + len(payload), 0) + payload


def ipv4(payload, ihl=5, frag=0x4000, proto=17, total=None):
    opts = b"\x01" * (4 * ihl - 20)  # NOP options
    tl = 4 * ihl + len(payload) if total is None else total
    return (struct.pack(">BBHHHBBH", 0x40 | ihl, 0, tl, 1, frag, 64, proto, 0) +
            bytes([192, 0, 2, 7, 192, 0, 2, 1]) + opts + payload)


def ipv6(payload, nh=17, plen=None):
    pl = len(payload) if plen is None else plen
    return (struct.pack(">IHBB", 0x60000000, pl, nh, 64) +
            bytes.fromhex("20010db8000000000000000000000007") +
            bytes.fromhex("20010db8000000000000000000000001") + payload)


@seed("capture")
def capture_seeds():
    init = INITIATIONS[0]
    good = udp_to(51820, init)
    return {
        "ipv4": ipv4(good),
        "ipv4-options": ipv4(good, ihl=7),
        "ipv4-fcs-trailer": ipv4(good) + b"\xde\xad\xbe\xef",
        "ipv4-fragment": ipv4(good, frag=0x2000),
        "ipv4-ip-len-lies": ipv4(good, total=20 + 156 + 4),
        "ipv4-ihl-4": b"\x44" + ipv4(good)[1:],
        "ipv4-tcp": ipv4(good, proto=6),
        "ipv4-other-port": ipv4(udp_to(51821, init)),
        "ipv4-response": ipv4(udp_to(51820, b"\x02\x00\x00\x00" + init[4:])),
        "ipv4-short": ipv4(good)[:100],
        "ipv6": ipv6(good),
        "ipv6-link-local-src": ipv6(good)[:8] + bytes.fromhex("fe80" + "00" * 13 + "07") +
        ipv6(good)[24:],
        "ipv6-hop-by-hop": ipv6(b"\x11\x00" + b"\x00" * 6 + good, nh=0),
        "ipv6-udp-len-lies": ipv6(udp_to(51820, init + b"xxxx")),
        "not-ip": b"\x00" * 200,
    }


@seed("noise")
def noise_seeds():
    def fix_mac1(m):  # the harness recomputes mac1 when the last byte is odd
        return m[:-1] + bytes([m[-1] | 1])

    def flip(m, at):
        return m[:at] + bytes([m[at] ^ 0x80]) + m[at + 1:]

    i0 = INITIATIONS[0]
    out = {"wireguard-go-%d" % i: m for i, m in enumerate(INITIATIONS)}
    out.update({
        "mac1-recomputed": fix_mac1(i0),
        "sender-index-changed": fix_mac1(i0[:4] + b"\x01\x02\x03\x04" + i0[8:]),
        "ephemeral-zero": fix_mac1(i0[:8] + bytes(32) + i0[40:]),
        "static-flipped": fix_mac1(flip(i0, 50)),
        "timestamp-flipped": fix_mac1(flip(i0, 100)),
        "mac1-flipped": flip(i0, 120),
        "response-type": b"\x02" + i0[1:],
        "short": i0[:147],
        "long": i0 + b"\x00",
    })
    return out


# common/jitproto.h, as the same host's build lays the structs out (little-endian x86_64).
JIT_MAGIC_REQUEST, JIT_MAGIC_ANSWER = 0x51544a57, 0x41544a57


def jit_addr(family, port, addr):
    return struct.pack("<H", family) + struct.pack(">H", port) + addr + bytes(16 - len(addr))


def jit_request(source, client, initiation, magic=JIT_MAGIC_REQUEST, rid=1):
    return struct.pack("<IIQ", magic, 0, rid) + source + client + initiation + bytes(4)


@seed("jit")
def jit_seeds():
    v4 = jit_addr(2, 51306, bytes([127, 0, 0, 1]))
    v6 = jit_addr(10, 40000, bytes.fromhex("20010db8000000000000000000000007"))
    client = jit_addr(2, 54058, bytes([127, 0, 0, 1]))
    out = {
        "request-ipv4": jit_request(v4, client, INITIATIONS[0]),
        "request-ipv6": jit_request(v6, v6, INITIATIONS[1], rid=2 ** 63),
        "request-no-source": jit_request(jit_addr(0, 0, b""), client, INITIATIONS[0]),
        "request-unix-source": jit_request(jit_addr(1, 0, b"/x"), client, INITIATIONS[0]),
        "request-answer-magic": jit_request(v4, client, INITIATIONS[0], magic=JIT_MAGIC_ANSWER),
        "request-short": jit_request(v4, client, INITIATIONS[0])[:207],
        "request-truncated-long": jit_request(v4, client, INITIATIONS[0]) + b"\0" * 8,
    }
    for v in range(0, 7):
        out["answer-verdict-%d" % v] = struct.pack("<IIQ32s", JIT_MAGIC_ANSWER, v, 7, bytes(range(32)))
    out["answer-request-magic"] = struct.pack("<IIQ32s", JIT_MAGIC_REQUEST, 1, 7, b"")
    out["answer-long"] = struct.pack("<IIQ32s", JIT_MAGIC_ANSWER, 1, 7, b"") + b"\0"
    return out


@seed("priv")
def priv_seeds():
    # fuzz_priv: byte 0 bit 7 clear, byte 1 the op (1 INSTALL .. 8 CAPTURE_OPEN, 9 DUMP_PEER),
    # the rest the body (the harness writes the header). A peer: key, psk, has_psk, n_allowed,
    # reserved, keepalive, sockaddr_storage, 8 prov_cidr (family, bits, 16 bytes).
    def peer(n_allowed=1, keepalive=-1):
        cidr = bytes([2, 32]) + bytes([10, 0, 0, 2]) + b"\0" * 12
        allowed = (cidr * n_allowed).ljust(8 * 18, b"\0")
        return (bytes(range(1, 33)) + b"\0" * 32 + bytes([0, n_allowed]) + b"\0\0" +
                struct.pack("<i", keepalive) + b"\0" * 128 + allowed)
    out = {}
    for op in range(0, 10):
        out["op-%d-empty" % op] = bytes([0, op])
    out["install-peer"] = bytes([0, 1]) + peer()
    out["update-peer-keepalive"] = bytes([0, 2]) + peer(0, 25)
    out["remove-one"] = bytes([0, 3]) + struct.pack("<II", 1, 0) + bytes(range(1, 33))
    out["dh-point"] = bytes([0, 6]) + bytes(range(9, 41))
    out["capture-eth0"] = bytes([0, 8]) + b"eth0".ljust(16, b"\0")
    out["raw-short-header"] = bytes([0x80]) + struct.pack("<IIIi", 1, 16, 1, 0)
    return out


def main(names):
    for name in names or sorted(SEEDS):
        out = os.path.join(CORPUS, name)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        for fname, data in SEEDS[name]().items():
            with open(os.path.join(out, fname), "wb") as f:
                f.write(data)
        print("%-10s %3d seeds" % (name, len(os.listdir(out))))


if __name__ == "__main__":
    main(sys.argv[1:])
