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
