#!/usr/bin/env bash
# Compile RefJobs.scala with the Scala 2.13 compiler jar that ships inside the pyspark wheel.
set -euo pipefail
ROOT=${SPARK_REF_ROOT:?set SPARK_REF_ROOT to a scratch folder (see README.md)}
J="$ROOT/venv/lib/python3.11/site-packages/pyspark/jars"
rm -rf "$ROOT/tmp/classes"; mkdir -p "$ROOT/tmp/classes"
java -cp "$J/*" scala.tools.nsc.Main -usejavacp -nowarn -d "$ROOT/tmp/classes" "$ROOT/out/scripts/RefJobs.scala"
(cd "$ROOT/tmp/classes" && jar cf "$ROOT/tmp/refjobs.jar" .)
echo "built $ROOT/tmp/refjobs.jar"
