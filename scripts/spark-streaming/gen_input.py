#!/usr/bin/env python3
"""Generate the fixed input: 16 batches; batches 9 and 10 empty."""
import json, os, sys

def gen():
    batches = []
    for b in range(16):
        n = (b * 7) % 5 + 2
        if b in (9, 10):
            n = 0
        batches.append([["k" + str((b * 3 + i * 5) % 6), ((b + 1) * (i + 2)) % 7 - 3] for i in range(n)])
    return {"interval_ms": 1000, "batches": batches}

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "input.json")
    with open(out, "w") as f:
        json.dump(gen(), f)
        f.write("\n")
    print("wrote", out)
