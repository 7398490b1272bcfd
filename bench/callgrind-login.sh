#!/usr/bin/env bash
# Instructions per request of native login completion and of pass-through, under valgrind's
# callgrind (see bench/callgrind.sh for why instruction counts). An upstream nginx answers
# POST /self-service/login with tests/fixtures/kratos/synthesized/native-login-200.json (a
# session_token and an expanded session, as bench/run.sh's upstream does) and
# GET /health/alive; the gateway (10 random ids listed, none of them the fixture's) runs
# under callgrind with instrumentation off; for each workload WARMUP requests, then
# instrumentation on for COUNT requests, off, and a dump.
#
# Usage: bench/callgrind-login.sh NAME=BINARY...
# Environment: COUNT (10000), WARMUP (1000), CONNS (8), CARGO_TARGET_DIR (target),
#   BENCH_OUT ($CARGO_TARGET_DIR/bench-callgrind-login, emptied first; callgrind.NAME.1 is
#   pass-through, callgrind.NAME.2 login).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COUNT=${COUNT:-10000}
WARMUP=${WARMUP:-1000}
CONNS=${CONNS:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-callgrind-login}
LOAD=$CARGO_TARGET_DIR/release/kratos-gate-bench-load
UP=19733 ADMIN=19734 PUB=19755 OPS=19756
FIX=$ROOT/tests/fixtures/kratos/synthesized
LOGIN_REQUEST='{"method":"password","identifier":"alice@example.com","password":"correct horse battery staple"}'
FLOW=7efedf89-4dda-4636-8320-7506e58db1a3
[ $# -ge 1 ] || { echo "usage: bench/callgrind-login.sh NAME=BINARY..." >&2; exit 2; }
[ -x "$LOAD" ] || { echo "callgrind-login: no load generator at $LOAD" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "callgrind-login: valgrind is missing" >&2; exit 2; }
die() { echo "callgrind-login: $*" >&2; exit 1; }
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
cat > "$OUT/upstream.conf" <<CONF
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
    location = /health/alive { return 200 '{"status":"ok"}\n'; }
    location = /self-service/login {
      add_header Cache-Control "private, no-cache, no-store, must-revalidate";
      return 200 $LOGIN_BODY;
    }
  }
  server {
    listen 127.0.0.1:$ADMIN;
    location / { return 204; }
  }
}
CONF
"$NGINX" -c "$OUT/upstream.conf" -p "$OUT" 2>/dev/null &
PIDS[upstream]=$!
wait_http "http://127.0.0.1:$UP/health/alive" 20 || die "upstream did not start"
python3 "$ROOT/bench/tools.py" gen-ids 10 "$OUT/blocklist.yaml" 10
cat > "$OUT/gateway.yaml" <<CONF
listen:
  public: 127.0.0.1:$PUB
  ops: 127.0.0.1:$OPS
upstream:
  public: http://127.0.0.1:$UP
  admin: http://127.0.0.1:$ADMIN
blocklist:
  path: $OUT/blocklist.yaml
CONF

for a in "$@"; do
  n=${a%%=*}
  bin=${a#*=}
  [ -x "$bin" ] || die "no executable $bin"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.$n" \
    "$bin" --config "$OUT/gateway.yaml" > "$OUT/logs/$n.log" 2>&1 &
  PIDS[$n]=$!
  wait_http "http://127.0.0.1:$OPS/readyz" 120 || die "$n did not become ready"
  i=0
  for w in pass login; do
    i=$((i + 1))
    if [ "$w" = login ]; then
      args=(--url "http://127.0.0.1:$PUB/self-service/login?flow=$FLOW" --method POST
        -H "Accept: application/json" -H "Content-Type: application/json" --body "$LOGIN_REQUEST")
    else
      args=(--url "http://127.0.0.1:$PUB/health/alive" -H "Accept: application/json")
    fi
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
  for w in pass login; do
    i=$((i + 1))
    total=$(awk '/^totals:/ {print $2}' "$OUT/callgrind.$n.$i")
    echo "$n $w: $total instructions for $COUNT requests: $((total / COUNT)) per request"
  done
done
