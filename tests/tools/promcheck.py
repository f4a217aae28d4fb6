#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# promcheck.py NAME < metrics.txt: the Prometheus text exposition on stdin, parsed by
# Debian's python3-prometheus-client (its parser raises on any malformed line), and held to
# more than it asks: every family has a non-empty HELP and a TYPE (not "unknown"), every
# sample belongs to a declared family, no family is declared twice, counters end in _total.
# Prints "NAME: N families, M samples" or the problems, exit 1.
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

name = sys.argv[1] if len(sys.argv) > 1 else "metrics"
text = sys.stdin.read()
problems = []
helps, types = {}, {}
for line in text.splitlines():
    m = re.match(r"# (HELP|TYPE) (\S+) ?(.*)$", line)
    if m:
        table = helps if m.group(1) == "HELP" else types
        if m.group(2) in table:
            problems.append("%s declared twice: %s" % (m.group(1), m.group(2)))
        table[m.group(2)] = m.group(3)
    elif line.startswith("#") or not line.strip():
        continue
    else:
        sample = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line).group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", sample)
        if sample not in types and family not in types:
            problems.append("a sample without TYPE: %s" % sample)
try:
    families = list(text_string_to_metric_families(text))
except Exception as e:  # the parser's own verdict
    print("%s: the parser refuses it: %s" % (name, e))
    sys.exit(1)
samples = 0
for f in families:
    samples += len(f.samples)
    if not f.documentation.strip():
        problems.append("no HELP: %s" % f.name)
    if f.type == "unknown":
        problems.append("no TYPE: %s" % f.name)
for fam, t in types.items():
    if t == "counter" and not fam.endswith("_total"):
        problems.append("a counter not named _total: %s" % fam)
    if fam not in helps:
        problems.append("TYPE without HELP: %s" % fam)
if problems:
    print("%s: %d problem(s): %s" % (name, len(problems), "; ".join(problems[:12])))
    sys.exit(1)
print("%s: %d families, %d samples, each with HELP and TYPE" % (name, len(families), samples))
