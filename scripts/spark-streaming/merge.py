#!/usr/bin/env python3
"""merge.py RUN_A RUN_B : check tmp/RUN_A and tmp/RUN_B are identical, then write
out/spark_streaming_reference.jsonl (+ _errors.jsonl) from RUN_A."""
import json, os, sys
ROOT = os.environ["SPARK_REF_ROOT"]
ORDER = ["update_state_by_key", "reduce_by_key_and_window_inv", "reduce_by_key_and_window_inv_filter",
         "reduce_by_key_and_window_inv_slide2", "reduce_by_key_and_window", "count_by_window",
         "map_with_state", "map_with_state_snapshots",
         "reduce_by_key_and_window_inv_w5", "map_with_state_ckpt1s", "map_with_state_ckpt1s_snapshots",
         "scala_update_state_by_key", "scala_reduce_by_key_and_window_inv", "scala_reduce_by_key_and_window_inv_filter",
         "scala_reduce_by_key_and_window_inv_slide2", "scala_reduce_by_key_and_window_inv_w5",
         "scala_reduce_by_key_and_window", "scala_count_by_window"]
def load(run, files):
    rows = []
    for f in files:
        try:
            rows += [json.loads(l) for l in open(f"{ROOT}/tmp/{run}/{f}")]
        except FileNotFoundError:
            pass
    return sorted(rows, key=lambda o: (ORDER.index(o["job"]), o["batch"]))
a, b = sys.argv[1], sys.argv[2]
ra, rb = load(a, ["pyspark.jsonl", "scala.jsonl"]), load(b, ["pyspark.jsonl", "scala.jsonl"])
ea, eb = load(a, ["scala.errors.jsonl"]), load(b, ["scala.errors.jsonl"])
strip = lambda es: [(e["job"], e["batch"], e["error"].split("):", 1)[-1]) for e in es]  # drop stage/TID numbers
assert ra == rb, "runs differ!"
assert strip(ea) == strip(eb), "error lines differ!"
assert {o["job"] for o in ra} == set(ORDER), set(ORDER) - {o["job"] for o in ra}
with open(f"{ROOT}/out/spark_streaming_reference.jsonl", "w") as f:
    for o in ra: f.write(json.dumps(o) + "\n")
with open(f"{ROOT}/out/spark_streaming_reference_errors.jsonl", "w") as f:
    for job, batch, err in strip(ea):
        f.write(json.dumps({"job": job, "batch": batch, "error": err.strip()}) + "\n")
print(f"runs {a} and {b} identical: {len(ra)} output lines, {len(ea)} error lines")
