#!/usr/bin/env bash
# Makes the README's pictures of `flintlock report`: docs/report.png (the top of the report
# of a 6-iteration PageRank run: depth and time per job) and docs/report-checkpoint.png (the
# job that writes a checkpoint, alone: a log cut down to that job's lines).
# Needs Debian's chromium (`apt-get install chromium`; .ci/run installs it) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chrome="${FLINTLOCK_CHROMIUM:-$(command -v chromium || command -v chromium-headless-shell)}"
shot() { # page, output, width, height
    local flags=(--headless --disable-gpu --disable-dev-shm-usage --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --hide-scrollbars "--user-data-dir=$work/profile-$(basename "$2")"
        "--window-size=$3,$4" "--screenshot=$2")
    [ "$(id -u)" = 0 ] && flags+=(--no-sandbox)
    "$chrome" "${flags[@]}" "file://$1" >/dev/null 2>&1
}
cargo build -q --release --example pagerank --bin flintlock
pagerank=target/release/examples/pagerank
flintlock=target/release/flintlock

# The top of a 6-iteration run's report.
"$pagerank" --nodes 10000 --edge-count 100000 --iterations 6 --checkpoint-every 3 \
    --event-log "$work/six.jsonl" >/dev/null
"$flintlock" report "$work/six.jsonl" -o "$work/six.html" >/dev/null
shot "$work/six.html" docs/report.png 1280 960

# The checkpoint job of a 1-iteration run (job 0), with its stages and tasks only.
"$pagerank" --nodes 10000 --edge-count 100000 --iterations 1 --checkpoint-every 1 \
    --event-log "$work/one.jsonl" >/dev/null
python3 - "$work/one.jsonl" "$work/job0.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
start = next(i for i, l in enumerate(lines) if l["event"] == "JobStarted" and l["job_id"] == 0)
end = next(i for i, l in enumerate(lines) if l["event"] == "JobEnded" and l["job_id"] == 0)
with open(sys.argv[2], "w") as out:
    for l in [lines[0]] + lines[start:end + 1]:
        out.write(json.dumps(l, separators=(",", ":")) + "\n")
PY
"$flintlock" report "$work/job0.jsonl" -o "$work/job0.html" >/dev/null
shot "$work/job0.html" docs/report-checkpoint.png 900 1800
echo "wrote docs/report.png and docs/report-checkpoint.png"
