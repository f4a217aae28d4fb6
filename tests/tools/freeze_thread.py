#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""freeze_thread: stop one thread of a running process for a while; its other threads run on.

  freeze_thread.py TID SECONDS

ptrace(PTRACE_SEIZE) then PTRACE_INTERRUPT stop that thread alone (SIGSTOP would stop the
whole process); prints "frozen" once it is stopped, holds it SECONDS (or until SIGTERM), then
detaches, which lets it run again. Root (or CAP_SYS_PTRACE) for another user's process. Used by
tests/e2e/test_admission.sh to stand in for a relay handshake thread that gets no CPU.
"""

import ctypes
import os
import signal
import sys
import time

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    tid, secs = int(argv[1]), float(argv[2])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    for req in (PTRACE_SEIZE, PTRACE_INTERRUPT):
        if libc.ptrace(req, tid, None, None) < 0:
            err = ctypes.get_errno()
            sys.stderr.write("freeze_thread: ptrace(%#x, %d): %s\n" % (req, tid, os.strerror(err)))
            return 1
    os.waitpid(tid, WALL)
    print("frozen", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    end = time.monotonic() + secs
    while not stop and time.monotonic() < end:
        time.sleep(0.05)
    libc.ptrace(PTRACE_DETACH, tid, None, None)
    print("thawed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
