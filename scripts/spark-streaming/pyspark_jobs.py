#!/usr/bin/env python3
"""Run one PySpark DStream job on input.json and append JSON lines to an output file.

usage: pyspark_jobs.py JOB INPUT_JSON OUTPUT_JSONL CHECKPOINT_DIR
JOB in: update_state_by_key reduce_by_key_and_window_inv reduce_by_key_and_window_inv_filter
        reduce_by_key_and_window_inv_slide2 reduce_by_key_and_window count_by_window
"""
import json, operator, os, sys, time, warnings
from pyspark import SparkConf, SparkContext
from pyspark.streaming import StreamingContext

warnings.simplefilter("ignore", FutureWarning)
TOTAL_BATCHES = 20

job, input_path, out_path, ckpt = sys.argv[1:5]
inp = json.load(open(input_path))
interval_s = inp["interval_ms"] // 1000
batches = inp["batches"]

conf = SparkConf().setMaster("local[2]").setAppName("ref-" + job).set("spark.ui.enabled", "false")
sc = SparkContext(conf=conf)
sc.setLogLevel("WARN")
ssc = StreamingContext(sc, interval_s)
ssc.checkpoint(ckpt)

rdds = [sc.parallelize([tuple(r) for r in b], 2) for b in batches]
stream = ssc.queueStream(rdds, oneAtATime=True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refsink
from refsink import lock, clock, results

kv = "kv"

if job == "update_state_by_key":
    def upd(new_values, old):
        s = (old or 0) + sum(new_values)
        return None if s == 0 else s
    out = stream.updateStateByKey(upd); fmt = kv
elif job == "reduce_by_key_and_window_inv":
    out = stream.reduceByKeyAndWindow(operator.add, operator.sub, 3 * interval_s, interval_s); fmt = kv
elif job == "reduce_by_key_and_window_inv_filter":
    out = stream.reduceByKeyAndWindow(operator.add, operator.sub, 3 * interval_s, interval_s,
                                      filterFunc=lambda kv_: kv_[1] != 0); fmt = kv
elif job == "reduce_by_key_and_window_inv_slide2":
    out = stream.reduceByKeyAndWindow(operator.add, operator.sub, 4 * interval_s, 2 * interval_s); fmt = kv
elif job == "reduce_by_key_and_window_inv_w5":
    # extra: window >= 5*slide, the only case where PySpark really uses the inverse function
    out = stream.reduceByKeyAndWindow(operator.add, operator.sub, 5 * interval_s, interval_s); fmt = kv
elif job == "reduce_by_key_and_window":
    out = stream.reduceByKeyAndWindow(operator.add, None, 3 * interval_s, interval_s); fmt = kv
elif job == "count_by_window":
    out = stream.countByWindow(3 * interval_s, interval_s)
    fmt = "count"
else:
    raise SystemExit("unknown job " + job)

refsink.fmt_name[0] = fmt
stream.foreachRDD(refsink.on_input)
out.foreachRDD(refsink.on_output)

ssc.start()
deadline = time.time() + 240
while time.time() < deadline:
    time.sleep(0.5)
    with lock:
        if len(clock) >= TOTAL_BATCHES and clock:
            t0 = min(clock)
            last = t0 + (TOTAL_BATCHES - 1) * inp["interval_ms"]
            # slide-2 output only exists on some batches; wait for the input clock to pass the last batch
            if max(clock) >= last and (last in results or job.endswith("slide2")):
                break
time.sleep(1.5)
ssc.stop(stopSparkContext=True, stopGraceFully=False)

t0 = min(clock)
iv = inp["interval_ms"]
# verify alignment: the first queued RDD must land in batch 0, etc.
for t, c in sorted(clock.items()):
    b = (t - t0) // iv
    exp = len(batches[b]) if b < len(batches) else 0
    assert (t - t0) % iv == 0 and c == exp, ("misaligned input", b, c, exp)
with open(out_path, "a") as f:
    for t in sorted(results):
        b = (t - t0) // iv
        assert (t - t0) % iv == 0
        if b >= TOTAL_BATCHES:
            continue
        f.write(json.dumps({"job": job, "batch": b, "records": results[t]}) + "\n")
print("done", job, "batches with output:", sorted((t - t0) // iv for t in results if (t - t0) // iv < TOTAL_BATCHES))
