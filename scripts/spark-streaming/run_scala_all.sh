#!/usr/bin/env bash
# usage: run_scala_all.sh RUN_NAME [JOB...]  -> $SPARK_REF_ROOT/tmp/RUN_NAME/scala.jsonl (+ scala.errors.jsonl)
set -euo pipefail
ROOT=${SPARK_REF_ROOT:?set SPARK_REF_ROOT to a scratch folder (see README.md)}
RUN=${1:?run name}; shift
JOBS=("$@")
D="$ROOT/tmp/$RUN"; mkdir -p "$D"
# full run: start from empty output files (with explicit JOB args, output is appended)
[ ${#JOBS[@]} -gt 0 ] || rm -f "$D/scala.jsonl" "$D/scala.errors.jsonl"
[ ${#JOBS[@]} -gt 0 ] || JOBS=(scala_update_state_by_key scala_reduce_by_key_and_window_inv \
  scala_reduce_by_key_and_window_inv_filter scala_reduce_by_key_and_window_inv_slide2 \
  scala_reduce_by_key_and_window_inv_w5 scala_reduce_by_key_and_window scala_count_by_window \
  map_with_state map_with_state_ckpt1s)
export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
SPARK_HOME="$ROOT/venv/lib/python3.11/site-packages/pyspark"
[ -f "$ROOT/tmp/refjobs.jar" ] || bash "$ROOT/out/scripts/build_scala.sh"
for job in "${JOBS[@]}"; do
  rm -rf "$ROOT/tmp/ckpt/$RUN-$job"
  "$SPARK_HOME/bin/spark-submit" --master 'local[2]' --class RefJobs "$ROOT/tmp/refjobs.jar" \
     "$job" "$ROOT/out/input.json" "$D/scala.jsonl" "$ROOT/tmp/ckpt/$RUN-$job" > "$D/scala-$job.log" 2>&1 || echo "EXIT $? for $job"
  grep -E "^(done|FAILED)" "$D/scala-$job.log" || true
done
