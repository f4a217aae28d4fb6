#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""rtt_split: one udpload ping --trace run split into periods with and without bursts.

  rtt_split.py TRACE BURSTS --during S --quiet-after S

TRACE: udpload ping --trace lines, "SENT_NS RTT_NS" or "SENT_NS lost". BURSTS: one
CLOCK_MONOTONIC ns per line, when each burst began (flows.py's "start NS"). A packet sent
within S (--during) seconds of a burst's start belongs to the churn; one sent before the
first burst, or --quiet-after seconds or more after the last burst that began before it, is
quiet; the rest (a burst's tail) is counted in neither. Prints one line:

  churn n=N lost=L p50_us=.. p99_us=.. max_us=.. quiet n=N lost=L p50_us=.. p99_us=.. max_us=..

Exit 1 when either period has no packet (nothing to compare), 2 on a usage error.
"""

import bisect
import sys


def quantile(v, q):
    """The nearest-rank q quantile of sorted v, in µs."""
    return v[min(len(v) - 1, max(0, int(q * len(v) + 0.999999) - 1))] / 1e3


def summary(name, rtts, lost):
    rtts.sort()
    return "%s n=%d lost=%d p50_us=%.1f p99_us=%.1f max_us=%.1f" % (
        name, len(rtts) + lost, lost, quantile(rtts, 0.5), quantile(rtts, 0.99),
        rtts[-1] / 1e3)


def main(argv):
    if len(argv) != 7 or argv[3] != "--during" or argv[5] != "--quiet-after":
        sys.stderr.write(__doc__)
        return 2
    during = float(argv[4]) * 1e9
    quiet_after = float(argv[6]) * 1e9
    with open(argv[2]) as f:
        bursts = sorted(int(line) for line in f if line.strip())
    rtts = {"churn": [], "quiet": []}
    lost = {"churn": 0, "quiet": 0}
    with open(argv[1]) as f:
        for line in f:
            sent, rtt = line.split()
            sent = int(sent)
            i = bisect.bisect_right(bursts, sent) - 1  # the last burst begun by then
            if i >= 0 and sent - bursts[i] < during:
                period = "churn"
            elif i < 0 or sent - bursts[i] >= quiet_after:
                period = "quiet"
            else:
                continue
            if rtt == "lost":
                lost[period] += 1
            else:
                rtts[period].append(int(rtt))
    if not rtts["churn"] or not rtts["quiet"]:
        print("churn n=%d quiet n=%d: nothing to compare" % (len(rtts["churn"]),
                                                              len(rtts["quiet"])))
        return 1
    print(summary("churn", rtts["churn"], lost["churn"]),
          summary("quiet", rtts["quiet"], lost["quiet"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
