#!/usr/bin/env python3
"""Independent pure-Python model of the DStream semantics (written from the Spark source),
used only to cross-check the Spark outputs. Prints JSON lines in the same format."""
import json, sys
from collections import defaultdict

inp = json.load(open(sys.argv[1]))
B = inp["batches"]; N = 20
def batch(t): return B[t] if 0 <= t < len(B) else []
def red(ts):
    d = defaultdict(int); seen = set()
    for t in ts:
        for k, v in batch(t):
            d[k] += v; seen.add(k)
    return {k: d[k] for k in seen}
out = []
def emit(job, t, d): out.append({"job": job, "batch": t, "records": sorted([[k, v] for k, v in d.items()])})

# updateStateByKey
st = {}
for t in range(N):
    nv = red([t]); new = {}
    for k in set(st) | set(nv):
        s = st.get(k, 0) + nv.get(k, 0)
        if s != 0: new[k] = s
    st = new; emit("update_state_by_key", t, st)

def scala_inv(job, w, s, filt=None):
    prev_state = {}  # state at previous emission
    for t in range(N):
        if (t + 1) % s: continue
        old = [red([i]) for i in range(t - s - w + 1, t - w + 1) if i >= 0]
        new = [red([i]) for i in range(t - s + 1, t + 1) if i >= 0]
        prev = prev_state if t - s >= 0 else {}
        keys = set(prev) | {k for o in old for k in o} | {k for n in new for k in n}
        cur = {}
        for k in keys:
            ov = [o[k] for o in old if k in o]; nvs = [n[k] for n in new if k in n]
            if k not in prev:
                if not nvs:
                    raise RuntimeError(f"{job}: Spark would throw 'Neither previous window has value for key, nor new values found' at batch {t} key {k}")
                cur[k] = sum(nvs)
            else:
                v = prev[k]
                if ov: v = v - sum(ov)
                if nvs: v = v + sum(nvs)
                cur[k] = v
        if filt: cur = {k: v for k, v in cur.items() if filt(v)}
        prev_state = cur; emit(job, t, cur)

def recompute(job, w, s, filt=None):
    for t in range(N):
        if (t + 1) % s: continue
        cur = red(range(t - w + 1, t + 1))
        if filt: cur = {k: v for k, v in cur.items() if filt(v)}
        emit(job, t, cur)

def py_inv(job, w, s):  # PythonReducedWindowedDStream incremental path (only when w >= 5*s)
    prev = None
    for t in range(N):
        if (t + 1) % s: continue
        if prev is None:
            cur = red(range(t - w + 1, t + 1))
        else:
            old = red([i for i in range(t - s - w + 1, t - w + 1) if i >= 0])
            cur = {k: v - old[k] if k in old else v for k, v in prev.items()}
            for k, v in red(range(t - s + 1, t + 1)).items(): cur[k] = cur.get(k, 0) + v
        prev = cur; emit(job, t, cur)

recompute("reduce_by_key_and_window_inv", 3, 1)
recompute("reduce_by_key_and_window_inv_filter", 3, 1, lambda v: v != 0)
recompute("reduce_by_key_and_window_inv_slide2", 4, 2)
recompute("reduce_by_key_and_window", 3, 1)
py_inv("reduce_by_key_and_window_inv_w5", 5, 1)
for t in range(N):
    c = sum(len(batch(i)) for i in range(t - 2, t + 1))
    out.append({"job": "count_by_window", "batch": t, "records": [["count", c]] if c else []})
emit_n = len(out)
st = {}
for t in range(N): st = {k: v for k, v in st.items()}; emit("scala_update_state_by_key", t, dict(out[t]["records"]))
scala_inv("scala_reduce_by_key_and_window_inv", 3, 1)
try:
    scala_inv("scala_reduce_by_key_and_window_inv_filter", 3, 1, lambda v: v != 0)
except RuntimeError as e:
    print(e, file=sys.stderr)
scala_inv("scala_reduce_by_key_and_window_inv_slide2", 4, 2)
scala_inv("scala_reduce_by_key_and_window_inv_w5", 5, 1)
recompute("scala_reduce_by_key_and_window", 3, 1)
cnt = None
for t in range(N):
    c = sum(len(batch(i)) for i in range(t - 2, t + 1))
    if cnt is None and c == 0: out.append({"job": "scala_count_by_window", "batch": t, "records": []}); continue
    cnt = c; out.append({"job": "scala_count_by_window", "batch": t, "records": [["count", c]]})

def map_with_state(job, full_scan):
    state = {}  # key -> (sum, last_update_batch)
    for t in range(N):
        mapped = []
        for k, v in batch(t):
            s = state.get(k, (0, 0))[0] + v; state[k] = (s, t); mapped.append([k, s])
        if full_scan(t):
            for k, (s, lu) in list(state.items()):
                if k not in dict(batch(t)) and lu < t - 3:  # lastUpdated < batchTime - timeout
                    mapped.append([k, "timeout:%d" % s]); del state[k]
        out.append({"job": job, "batch": t, "records": sorted(mapped, key=lambda r: (r[0], str(r[1])))})
        emit(job + "_snapshots", t, {k: s for k, (s, _) in state.items()})
map_with_state("map_with_state", lambda t: (t + 1) % 10 == 0)
map_with_state("map_with_state_ckpt1s", lambda t: True)
for o in out: print(json.dumps(o))
