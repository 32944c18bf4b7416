#!/usr/bin/env bash
# usage: run_pyspark_all.sh RUN_NAME   -> writes $SPARK_REF_ROOT/tmp/RUN_NAME/pyspark.jsonl
set -euo pipefail
ROOT=${SPARK_REF_ROOT:?set SPARK_REF_ROOT to a scratch folder (see README.md)}
RUN=${1:?run name}
source "$ROOT/venv/bin/activate"
export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
D="$ROOT/tmp/$RUN"; mkdir -p "$D"; rm -f "$D/pyspark.jsonl"
for job in update_state_by_key reduce_by_key_and_window_inv reduce_by_key_and_window_inv_filter \
           reduce_by_key_and_window_inv_slide2 reduce_by_key_and_window_inv_w5 reduce_by_key_and_window count_by_window; do
  rm -rf "$ROOT/tmp/ckpt/$RUN-$job"
  python "$ROOT/out/scripts/pyspark_jobs.py" "$job" "$ROOT/out/input.json" "$D/pyspark.jsonl" \
      "$ROOT/tmp/ckpt/$RUN-$job" > "$D/py-$job.log" 2>&1
  tail -1 "$D/py-$job.log"
done
