"""Driver-side collectors for pyspark_jobs.py. Kept in an importable module so that
checkpointing (which pickles the DStream graph, incl. foreachRDD functions) pickles
these functions by reference instead of trying to pickle the lock/dicts."""
import threading

lock = threading.Lock()
clock = {}    # batch time (ms) -> input record count (output op on the raw input stream)
results = {}  # batch time (ms) -> formatted records
fmt_name = ["kv"]

def ms(t):
    return int(round(t.timestamp() * 1000))

def fmt(rs):
    if fmt_name[0] == "count":
        return [["count", c] for c in rs]
    return sorted([[k, v] for k, v in rs], key=lambda r: r[0])

def on_input(t, rdd):
    c = rdd.count()
    with lock:
        clock[ms(t)] = c

def on_output(t, rdd):
    recs = fmt(rdd.collect())
    with lock:
        results[ms(t)] = recs
