#!/usr/bin/env python3
"""compare.py A.jsonl B.jsonl : compare two sets of {job,batch,records} lines (per job present in A)."""
import json, sys
from collections import defaultdict
def load(p):
    d = defaultdict(dict)
    for line in open(p):
        o = json.loads(line)
        if "records" in o: d[o["job"]][o["batch"]] = o["records"]
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
bad = 0
for job in sorted(a):
    if job not in b: print(f"{job}: missing in B"); continue
    diffs = [t for t in sorted(set(a[job]) | set(b[job])) if a[job].get(t) != b[job].get(t)]
    print(f"{job}: {'OK' if not diffs else 'DIFF at batches %s' % diffs} ({len(a[job])} batches)")
    for t in diffs[:3]: print("   ", t, "A:", a[job].get(t), "\n    ", t, "B:", b[job].get(t))
    bad += bool(diffs)
sys.exit(1 if bad else 0)
