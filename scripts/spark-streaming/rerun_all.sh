#!/usr/bin/env bash
# Full rerun: venv + pyspark 4.3.0, input, Scala build, every job twice (one Spark app at a time), merge + checks.
set -euo pipefail
ROOT=${SPARK_REF_ROOT:?set SPARK_REF_ROOT to a scratch folder (see README.md)}; S="$ROOT/out/scripts"
export JAVA_HOME=${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
[ -x "$ROOT/venv/bin/python" ] || python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q pyspark==4.3.0
python3 "$S/gen_input.py" "$ROOT/out/input.json"
bash "$S/build_scala.sh"
for run in run1 run2; do
  rm -rf "$ROOT/tmp/$run"
  bash "$S/run_pyspark_all.sh" "$run"
  bash "$S/run_scala_all.sh" "$run"
done
python3 "$S/merge.py" run1 run2
python3 "$S/model.py" "$ROOT/out/input.json" > "$ROOT/tmp/model.jsonl"
python3 "$S/compare.py" "$ROOT/out/spark_streaming_reference.jsonl" "$ROOT/tmp/model.jsonl"
