#!/usr/bin/env bash
# Instructions per request of the gateway under valgrind's callgrind: repeatable on a busy
# machine where wall-clock and CPU-time figures move by 10-30 % between runs (and where `perf`
# has no hardware counters, as in a VM). For each binary: an upstream nginx answering
# GET /health/alive and POST /self-service/login (with
# tests/fixtures/kratos/synthesized/native-login-200.json: a session_token and an expanded
# session, as bench/run.sh's upstream does), the gateway (10 random ids listed, none of them
# the fixture's) started under callgrind with instrumentation off; then per workload WARMUP
# requests, instrumentation on for COUNT requests (CONNS keep-alive connections of the load
# generator), off again, and a dump. Prints instructions per request and the functions with
# the most instructions of their own (callgrind_annotate).
#
# Workloads: pass (GET PATHREQ, passed through) and login (native login completion: the
# JSON submission copied for the identifier, the answer parsed and attributed).
#
# Usage: bench/callgrind.sh NAME=BINARY...
# Environment: WORKLOADS (pass; e.g. "pass login"), COUNT (20000), WARMUP (2000), CONNS (8),
#   TOP (25), PATHREQ (/health/alive), CARGO_TARGET_DIR (target), BENCH_OUT
#   ($CARGO_TARGET_DIR/bench-callgrind, emptied first: callgrind.NAME.N (the N-th workload),
#   annotate-NAME-WORKLOAD.txt and top-NAME-WORKLOAD.txt there are from the last run only).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${COUNT:-20000}
WARMUP=${WARMUP:-2000}
CONNS=${CONNS:-8}
TOP=${TOP:-25}
PATHREQ=${PATHREQ:-/health/alive}
read -r -a WORKS <<< "${WORKLOADS:-pass}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-callgrind}
LOAD=$CARGO_TARGET_DIR/release/kratos-gate-bench-load
UP=19733 ADMIN=19734 PUB=19755 OPS=19756
FIX=$ROOT/tests/fixtures/kratos/synthesized
LOGIN_REQUEST='{"method":"password","identifier":"alice@example.com","password":"correct horse battery staple"}'
FLOW=7efedf89-4dda-4636-8320-7506e58db1a3
[ $# -ge 1 ] || { echo "usage: bench/callgrind.sh NAME=BINARY..." >&2; exit 2; }
[ -x "$LOAD" ] || { echo "callgrind: no load generator at $LOAD" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "callgrind: valgrind is missing" >&2; exit 2; }
die() { echo "callgrind: $*" >&2; exit 1; }
declare -A PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_http() {
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

rm -rf "${OUT:?}" && mkdir -p "$OUT"/{logs,tmp}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
LOGIN_BODY=$(python3 "$ROOT/bench/tools.py" nginx-string "$FIX/native-login-200.json")
cat > "$OUT/upstream.conf" <<EOF
daemon off;
user root;
worker_processes 1;
pid $OUT/upstream.pid;
error_log $OUT/logs/upstream-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path $OUT/tmp/body;
  proxy_temp_path $OUT/tmp/proxy;
  fastcgi_temp_path $OUT/tmp/fastcgi;
  uwsgi_temp_path $OUT/tmp/uwsgi;
  scgi_temp_path $OUT/tmp/scgi;
  default_type "application/json; charset=utf-8";
  server {
    listen 127.0.0.1:$UP;
    location = /self-service/login {
      add_header Cache-Control "private, no-cache, no-store, must-revalidate";
      return 200 $LOGIN_BODY;
    }
    location / { return 200 '{"status":"ok"}\n'; }
  }
  server {
    listen 127.0.0.1:$ADMIN;
    location / { return 204; }
  }
}
EOF
"$NGINX" -c "$OUT/upstream.conf" -p "$OUT" 2>/dev/null &
PIDS[upstream]=$!
wait_http "http://127.0.0.1:$UP/health/alive" 20 || die "upstream did not start"
python3 "$ROOT/bench/tools.py" gen-ids 10 "$OUT/blocklist.yaml" 10
cat > "$OUT/gateway.yaml" <<EOF
listen:
  public: 127.0.0.1:$PUB
  ops: 127.0.0.1:$OPS
upstream:
  public: http://127.0.0.1:$UP
  admin: http://127.0.0.1:$ADMIN
blocklist:
  path: $OUT/blocklist.yaml
EOF

for a in "$@"; do
  n=${a%%=*}
  bin=${a#*=}
  [ -x "$bin" ] || die "no executable $bin"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.$n" \
    "$bin" --config "$OUT/gateway.yaml" > "$OUT/logs/$n.log" 2>&1 &
  PIDS[$n]=$!
  wait_http "http://127.0.0.1:$OPS/readyz" 120 || die "$n did not become ready"
  i=0
  for w in "${WORKS[@]}"; do
    i=$((i + 1))
    case "$w" in
      pass) args=(--url "http://127.0.0.1:$PUB$PATHREQ" -H "Accept: application/json") ;;
      login) args=(--url "http://127.0.0.1:$PUB/self-service/login?flow=$FLOW" --method POST
        -H "Accept: application/json" -H "Content-Type: application/json" --body "$LOGIN_REQUEST") ;;
      *) die "unknown workload $w (pass, login)" ;;
    esac
    "$LOAD" "${args[@]}" --count "$WARMUP" --connections "$CONNS" > /dev/null
    callgrind_control -z "${PIDS[$n]}" > /dev/null 2>&1
    callgrind_control -i on "${PIDS[$n]}" > /dev/null 2>&1
    "$LOAD" "${args[@]}" --count "$COUNT" --connections "$CONNS" > "$OUT/load-$n-$w.json"
    callgrind_control -i off "${PIDS[$n]}" > /dev/null 2>&1
    callgrind_control -d "$w" "${PIDS[$n]}" > /dev/null 2>&1
    ok=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["status"].get("200",0))' "$OUT/load-$n-$w.json")
    [ "$ok" = "$COUNT" ] || die "$n $w answered $ok of $COUNT requests with 200"
  done
  kill -INT "${PIDS[$n]}"
  wait "${PIDS[$n]}" 2>/dev/null || true
  unset "PIDS[$n]"
  i=0
  for w in "${WORKS[@]}"; do
    i=$((i + 1))
    f=$OUT/callgrind.$n.$i
    total=$(awk '/^totals:/ {print $2}' "$f")
    echo "$n $w: $total instructions for $COUNT requests: $((total / COUNT)) per request"
    callgrind_annotate --threshold=100 "$f" > "$OUT/annotate-$n-$w.txt" 2>/dev/null
    awk '/file:function/ {on=1; next} on && NF' "$OUT/annotate-$n-$w.txt" | sed -n "1,${TOP}p" > "$OUT/top-$n-$w.txt"
    sed 's/^/  /' "$OUT/top-$n-$w.txt"
  done
done
