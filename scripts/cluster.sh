#!/usr/bin/env bash
# Runs a flintlock program as N local processes (cluster mode, feature `cluster`), and
# restarts all of them when one fails: timely-dataflow is fail-stop, so a cluster that lost
# a process cannot go on, and the program starts over: a program that checkpoints into a
# shared folder and resumes (`Checkpointer::latest`; the pagerank example's --resume)
# continues from its newest checkpoint.
#
#   scripts/cluster.sh N [--restarts R] [--base-port P] [--logs DIR] -- PROGRAM [ARGS...]
#
# Every process runs `PROGRAM ARGS...` (in a process group of its own, stopped as a whole)
# with FLINTLOCK_PROCESSES=N, FLINTLOCK_PROCESS=i and
# FLINTLOCK_HOSTFILE (127.0.0.1:P+i, one line per process) in its environment, which
# `ClusterConfig::from_env` and the pagerank example read. Process 0's output is this
# script's; the others' go to DIR/process-<i>.out (and .err), DIR defaulting to a
# temporary folder that is removed at the end. Each attempt's process ids are in
# DIR/attempt-<k>.pids, one per line, in process order.
#
# Exit status: 0 when every process of an attempt succeeded; otherwise, after R restarts
# (default 3), the status of the first process that failed in the last attempt; 130 when
# interrupted. Example:
#
#   cargo build --release --features cluster --example pagerank
#   scripts/cluster.sh 2 -- target/release/examples/pagerank --output ranks.txt
set -uo pipefail

usage() {
    echo "usage: $0 N [--restarts R] [--base-port P] [--logs DIR] -- PROGRAM [ARGS...]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
n="$1"
shift
case "$n" in '' | *[!0-9]*) usage ;; esac
[ "$n" -ge 1 ] || usage
restarts=3
base_port=2101
logs=""
while [ $# -gt 0 ]; do
    case "$1" in
        --restarts) restarts="${2:?}"; shift 2 ;;
        --base-port) base_port="${2:?}"; shift 2 ;;
        --logs) logs="${2:?}"; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
[ $# -ge 1 ] || usage
case "$restarts$base_port" in *[!0-9]*) usage ;; esac

own_logs=""
if [ -z "$logs" ]; then
    logs="$(mktemp -d "${TMPDIR:-/tmp}/flintlock-cluster.XXXXXX")"
    own_logs=1
fi
mkdir -p "$logs"
hostfile="$logs/hostfile"
: > "$hostfile"
for ((i = 0; i < n; i++)); do
    echo "127.0.0.1:$((base_port + i))" >> "$hostfile"
done

pids=()
stop_all() {
    local pid
    # Each process leads its own process group (setsid): a PROGRAM that is a wrapper
    # (`bash -c`, `cargo run`) is stopped with everything it started.
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" "$pid" 2>/dev/null; done
    # A process that does not stop in 5 s is killed.
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    pids=()
}
finish() {
    [ -n "$own_logs" ] && rm -rf "$logs"
}
trap 'stop_all; finish; exit 130' INT TERM

attempt=0
while :; do
    attempt=$((attempt + 1))
    pids=()
    for ((i = 0; i < n; i++)); do
        if [ $i = 0 ]; then
            FLINTLOCK_PROCESSES=$n FLINTLOCK_PROCESS=$i FLINTLOCK_HOSTFILE="$hostfile" \
                setsid "$@" &
        else
            FLINTLOCK_PROCESSES=$n FLINTLOCK_PROCESS=$i FLINTLOCK_HOSTFILE="$hostfile" \
                setsid "$@" > "$logs/process-$i.out" 2> "$logs/process-$i.err" &
        fi
        pids+=($!)
    done
    printf '%s\n' "${pids[@]}" > "$logs/attempt-$attempt.pids"
    # Waits for the processes as they end; the first failure stops the others.
    failed=""
    status=0
    running=("${pids[@]}")
    while [ ${#running[@]} -gt 0 ] && [ -z "$failed" ]; do
        sleep 0.05
        still=()
        for pid in "${running[@]}"; do
            # Gone (reaped by bash): `wait` gives its saved status.
            if kill -0 "$pid" 2>/dev/null; then
                still+=("$pid")
                continue
            fi
            wait "$pid"
            code=$?
            if [ $code != 0 ] && [ -z "$failed" ]; then
                for ((i = 0; i < n; i++)); do
                    [ "${pids[$i]}" = "$pid" ] && failed=$i
                done
                status=$code
            fi
        done
        running=("${still[@]}")
    done
    if [ -z "$failed" ]; then
        finish
        exit 0
    fi
    stop_all
    # 126 and 127: the program cannot be run at all; another attempt would not help.
    if [ $attempt -gt "$restarts" ] || [ "$status" = 126 ] || [ "$status" = 127 ]; then
        echo "cluster.sh: process $failed failed (status $status) in attempt $attempt; no restarts left" >&2
        finish
        exit "$status"
    fi
    echo "cluster.sh: process $failed failed (status $status) in attempt $attempt; restarting all $n processes" >&2
done
