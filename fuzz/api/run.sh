#!/bin/sh
# Spec-driven hostile requests against berthd: schemathesis generates requests (valid and
# invalid: wrong types, unknown enum values, bad names, huge strings) from Docker's Engine API
# spec and checks the answers (no 5xx, status codes and bodies as the spec says).
#
#   fuzz/api/run.sh SPEC [SECONDS] [EXTRA SCHEMATHESIS ARGS...]
#
# SPEC is the Engine API spec's path (e.g. ../shared/reference/docker-engine-api-v1.51.yaml);
# it is never copied into the repository. SECONDS bounds the run (default 300).
#
# berthd runs as root in a throwaway network namespace (`unshare --net`, only `lo` up) with a
# temporary data root and `-H tcp://127.0.0.1:PORT` (plain HTTP inside that namespace), and
# schemathesis runs in the same namespace: no request and no network object berthd creates
# reaches the host. The berthd binary is $BERTHD, or target/debug/berthd under
# $CARGO_TARGET_DIR (or ./target). schemathesis comes from $SCHEMATHESIS_VENV (created with
# pip if absent, default /var/tmp/berth-schemathesis-venv).
#
# Excluded operations (they would reach out to a registry or the internet, or cannot be
# answered in a bounded time on purpose):
#   POST /images/create      pulls (fromImage) or downloads (fromSrc=URL)
#   POST /images/{name}/push, GET /images/search, POST /auth, GET /distribution/{name}/json
#                            talk to registries
#   POST /build              pulls FROM images and fetches `remote` URLs
#   /plugins/*               plugin pulls and upgrades (berth has no plugins)
#   GET /events              an endless stream unless `until` is given
#   POST /session, .../attach, .../attach/ws, POST /exec/{id}/start
#                            hijacked (upgraded) connections, not HTTP request/response
#   POST /containers/{id}/wait
#                            blocks until a container exits
# Reports (JUnit, NDJSON) go to $REPORT_DIR (default /var/tmp/berth-schemathesis-report).
set -eu

SPEC=${1:?usage: fuzz/api/run.sh SPEC [SECONDS] [schemathesis args...]}
shift
SECONDS_BUDGET=${1:-300}
[ $# -gt 0 ] && shift
SPEC=$(readlink -f "$SPEC")
[ -r "$SPEC" ] || { echo "cannot read $SPEC" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (berthd and unshare need it)" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BERTHD=${BERTHD:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/berthd}
[ -x "$BERTHD" ] || { echo "no berthd at $BERTHD (cargo build --bin berthd)" >&2; exit 2; }
VENV=${SCHEMATHESIS_VENV:-/var/tmp/berth-schemathesis-venv}
if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q schemathesis
fi
REPORT_DIR=${REPORT_DIR:-/var/tmp/berth-schemathesis-report}
mkdir -p "$REPORT_DIR"
WORK=$(mktemp -d /tmp/berth-schemathesis.XXXXXX)

export BERTHD VENV SPEC SECONDS_BUDGET WORK REPORT_DIR
# schemathesis keeps its cache (.schemathesis/) in the working directory: the temporary one.
cd "$WORK"
set +e
unshare --net -- sh -eu -c '
ip link set lo up
PORT=23751
"$BERTHD" --data-root "$WORK/data" --exec-root "$WORK/exec" --pidfile "$WORK/berthd.pid" \
    --config-file /dev/null -H "tcp://127.0.0.1:$PORT" -H "unix://$WORK/berth.sock" \
    --bridge=none --iptables=false >"$WORK/berthd.log" 2>&1 &
BPID=$!
i=0
until "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(\"http://127.0.0.1:$PORT/_ping\")" 2>/dev/null; do
    i=$((i+1)); [ $i -lt 100 ] || { echo "berthd did not start:"; cat "$WORK/berthd.log"; exit 1; }
    sleep 0.2
done
set +e
"$VENV/bin/schemathesis" run "$SPEC" --url "http://127.0.0.1:$PORT/v1.51" \
    --checks all --exclude-checks ignored_auth,object_level_authorization \
    --max-time "$SECONDS_BUDGET" --request-timeout 30 --workers 2 --no-color \
    --exclude-path-regex "^/(images/create|images/[^/]+/push|images/search|auth|build|session|events|plugins.*|distribution/.*|containers/[^/]+/(attach|attach/ws|wait)|exec/[^/]+/start)$" \
    --report junit,ndjson --report-dir "$REPORT_DIR" "$@"
RC=$?
set -e
if ! kill -0 $BPID 2>/dev/null; then
    echo "berthd DIED during the run; its log:"; tail -50 "$WORK/berthd.log"; RC=3
fi
grep -n "panicked" "$WORK/berthd.log" && { echo "berthd PANICKED (above)"; RC=3; }
kill -TERM $BPID; wait $BPID || true
cp "$WORK/berthd.log" "$REPORT_DIR/berthd.log"
exit $RC
' sh "$@"
RC=$?
rm -rf "$WORK"
exit $RC
