#!/usr/bin/env bash
# kratos-gate benchmark suite. Runs on one machine, on loopback only, bounded in time:
#
#   (a) client → upstream directly   (b) client → kratos-gate → upstream
#   (c) client → nginx proxy_pass (keep-alive upstream pool, equivalent settings) → upstream
#
# The upstream is nginx imitating Kratos with the repository's fixtures (whoami with the
# identity header, native login with a session_token). Every cell runs once per round and the
# rounds are interleaved, so machine noise hits every target alike; the table shows medians.
# Load: wrk (Debian) at fixed concurrency; at a fixed rate kratos-gate-bench-load
# (bench/load.rs, built with the gateway by `cargo build --release --features bench`: open
# loop like wrk2, coordinated-omission corrected). Every proxy cell also records the proxy's CPU
# time per request (see cpu_ticks). Writes the results into BENCHMARKS.md
# (between the bench markers) and prints PASS/FAIL per target.
#
# Usage: bench/run.sh [--quick] [--baseline GIT-REV] [--no-install] [--no-build]
#   --quick          one round of 2 s per cell, no import run (a smoke test, ~2 min)
#   --baseline REV   also build REV and run it as an extra target ("kratos-gate baseline"; the
#                    load generator still comes from this tree)
#   --no-install     do not apt-get install anything (tools must be on PATH)
#   --no-build       use the release binaries already built (gateway and load generator)
#   --micro          also run the micro-benchmarks (cargo run --release --example micro; builds
#                    the dev-dependencies, a few minutes more on a fresh machine)
# Environment: ROUNDS (3), DURATION (3 s), CONNS (32), RATE (auto: half the slowest cell),
#   REWRITE_ROUNDS (5: quiet and busy pairs of the "rewritten every second" p99, whose tail
#   moves by ±30 % between cells of one run, so its median needs more than ROUNDS),
#   CARGO_TARGET_DIR (target), BENCH_OUT ($CARGO_TARGET_DIR/bench).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMMAND="bench/run.sh $*"
ROUNDS=${ROUNDS:-3}
REWRITE_ROUNDS=${REWRITE_ROUNDS:-5}
DURATION=${DURATION:-3}
CONNS=${CONNS:-32}
RATE=${RATE:-auto}
QUICK=0
BASELINE=""
INSTALL=1
BUILD=1
MICRO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; ROUNDS=1; DURATION=2; REWRITE_ROUNDS=1 ;;
    --baseline) BASELINE=$2; shift ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --micro) MICRO=1 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench}
export PATH="$HOME/.cargo/bin:$PATH"
PY=python3
T0=$(date +%s)

# Ports (loopback only).
UP=18433          # upstream public (nginx imitating Kratos)
UPADMIN=18434     # upstream admin
NGX=18480         # nginx proxy_pass
declare -A PUBLIC=([gw10]=18455 [gw1m]=18555 [gwmail]=18655 [gwbase]=18755)
declare -A OPS=([gw10]=18491 [gw1m]=18591 [gwmail]=18691 [gwbase]=18791)
declare -A PIDS=()

log() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - T0 ))"; }
die() { echo "bench: $*" >&2; exit 1; }
calc() { awk "BEGIN{printf \"%.${2:-3}f\", $1}"; }

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${RELOADER_PID:-}" ] && kill "$RELOADER_PID" 2>/dev/null || true
  case "${DAV:-}" in /dev/shm/kratos-gate-bench.*) rm -rf "$DAV" ;; esac
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
log "tools"
if [ "$INSTALL" = 1 ]; then
  missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Only the binaries: Debian's nginx packages try to start a service, which is not wanted.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in wrk curl python3; do command -v $t >/dev/null || die "$t is missing"; done
[ -x "$NGINX" ] || die "nginx is missing"
# Debian's package may have started its own nginx on :80; it is not ours and stays untouched.

# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -rf "${OUT:?}/run"
RUN=$OUT/run
mkdir -p "$RUN"/{logs,lists,stage,tmp,wrk}
# The upstream keeps uploads in RAM when it can (no disk I/O in the measurement).
DAV=$RUN/dav
if [ -d /dev/shm ] && [ -w /dev/shm ]; then DAV=$(mktemp -d /dev/shm/kratos-gate-bench.XXXXXX); fi
mkdir -p "$DAV/upload" "$DAV/tmp"
BIN=$CARGO_TARGET_DIR/release/kratos-gate
LOAD=$CARGO_TARGET_DIR/release/kratos-gate-bench-load
BUILD_INFO="reused"
if [ "$BUILD" = 1 ]; then
  BASE_CACHE=""
  [ -n "$BASELINE" ] && BASE_CACHE=$OUT/kratos-gate-$(git -C "$ROOT" rev-parse --short "$BASELINE")
  if [ -n "$BASELINE" ] && [ -x "$BASE_CACHE" ]; then
    echo "baseline $BASELINE: reusing $BASE_CACHE"
    cp "$BASE_CACHE" "$OUT/kratos-gate-baseline"
  elif [ -n "$BASELINE" ]; then
    log "build baseline $BASELINE"
    rm -rf "$OUT/baseline-src" && mkdir -p "$OUT/baseline-src"
    git -C "$ROOT" archive "$BASELINE" | tar -x -C "$OUT/baseline-src"
    # Both trees are the same package in one target dir (shared dependencies): cargo can
    # take either for fresh while release/kratos-gate is the other's, so clean the package
    # before each build. The current tree is built after it (with the load generator).
    (cd "$OUT/baseline-src" && cargo clean -p kratos-gate --release --quiet \
      && cargo build --release --locked --quiet)
    cp "$CARGO_TARGET_DIR/release/kratos-gate" "$OUT/kratos-gate-baseline"
    cp "$CARGO_TARGET_DIR/release/kratos-gate" "$BASE_CACHE"
    (cd "$ROOT" && cargo clean -p kratos-gate --release --quiet)
  fi
  log "build"
  b0=$(date +%s)
  (cd "$ROOT" && cargo build --release --locked --features bench --quiet)
  BUILD_INFO="cargo build --release --features bench in $(( $(date +%s) - b0 )) s at $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
fi
[ -x "$BIN" ] || die "no release binary at $BIN"
[ -x "$LOAD" ] || die "no load generator at $LOAD (cargo build --release --features bench)"
if [ -n "$BASELINE" ] && [ "$BUILD" = 0 ]; then
  cached=$OUT/kratos-gate-$(git -C "$ROOT" rev-parse --short "$BASELINE")
  [ -x "$cached" ] && cp "$cached" "$OUT/kratos-gate-baseline"
fi
[ -z "$BASELINE" ] || [ -x "$OUT/kratos-gate-baseline" ] || die "no baseline binary"

# ---------------------------------------------------------------------------------------------
log "machine"
MEASURE_T0=$(date +%s)
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  echo "mem=$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tools=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | sed 's/.*: //'), kratos-gate-bench-load (bench/load.rs), $(rustc --version | cut -d' ' -f1-2)"
  echo "build=$BUILD_INFO"
} > "$RUN/machine.txt"
cat "$RUN/machine.txt"

VALUES=$RUN/values.txt
: > "$VALUES"
value() { echo "$1=$2" >> "$VALUES"; echo "  $1 = $2"; }
printf 'rounds=%s\nduration=%s\nconns=%s\n' "$ROUNDS" "$DURATION" "$CONNS" >> "$VALUES"
[ -n "$BASELINE" ] && echo "baseline=$BASELINE" >> "$VALUES"

# ---------------------------------------------------------------------------------------------
log "test data"
FIX=$ROOT/tests/fixtures/kratos/synthesized
IDENTITY=$($PY "$ROOT/bench/tools.py" json-id "$FIX/whoami-200.json" identity id)
TOKEN=$($PY "$ROOT/bench/tools.py" json-id "$FIX/native-login-200.json" session_token)
WHOAMI_BODY=$($PY "$ROOT/bench/tools.py" nginx-string "$FIX/whoami-200.json")
LOGIN_BODY=$($PY "$ROOT/bench/tools.py" nginx-string "$FIX/native-login-200.json")
IDENTITY_BODY=$($PY "$ROOT/bench/tools.py" nginx-string "$FIX/whoami-200.json" identity)
LOGIN_REQUEST='{"method":"password","identifier":"alice@example.com","password":"correct horse battery staple"}'
L=$RUN/lists
for g in gw10 gw1m gwmail gwbase; do mkdir -p "$L/$g"; done
$PY "$ROOT/bench/tools.py" gen-ids 10 "$L/gw10/blocklist.yaml" 10
cp "$L/gw10/blocklist.yaml" "$L/gwbase/blocklist.yaml"
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$RUN/stage/ids-1m.yaml" 1
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$RUN/stage/ids-1m-plus1.yaml" 1 1
cp "$RUN/stage/ids-1m.yaml" "$L/gw1m/blocklist.yaml"
$PY "$ROOT/bench/tools.py" gen-emails 100000 "$L/gwmail/blocklist.yaml" 3
ls -la "$RUN/stage" "$L"/*/blocklist.yaml | sed 's/^/  /'
head -c $((100 * 1024 * 1024)) /dev/zero > "$RUN/stage/upload-100m.bin"

# ---------------------------------------------------------------------------------------------
log "upstream (nginx imitating Kratos) and nginx proxy"
NGINX_COMMON="
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path $RUN/tmp/body;
  proxy_temp_path $RUN/tmp/proxy;
  fastcgi_temp_path $RUN/tmp/fastcgi;
  uwsgi_temp_path $RUN/tmp/uwsgi;
  scgi_temp_path $RUN/tmp/scgi;
  server_tokens off;"
cat > "$RUN/upstream.conf" <<EOF
daemon off;
user root;
worker_processes 2;
pid $RUN/upstream.pid;
error_log $RUN/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  $NGINX_COMMON
  default_type "application/json; charset=utf-8";
  server {
    listen 127.0.0.1:$UP backlog=4096;
    location = /health/alive { return 200 '{"status":"ok"}\n'; }
    location = /sessions/whoami {
      add_header X-Kratos-Authenticated-Identity-Id $IDENTITY;
      add_header Cache-Control "private, no-cache, no-store, must-revalidate";
      return 200 $WHOAMI_BODY;
    }
    location = /self-service/login {
      add_header Cache-Control "private, no-cache, no-store, must-revalidate";
      return 200 $LOGIN_BODY;
    }
    # Reads the whole body (written to RAM-backed or local disk) before answering.
    location /upload/ {
      root $DAV;
      dav_methods PUT;
      client_max_body_size 0;
      client_body_temp_path $DAV/tmp;
    }
    location = /nginx_status { stub_status; }
  }
  server {
    listen 127.0.0.1:$UPADMIN;
    location ~ ^/admin/identities/[^/]+/sessions\$ { return 204; }
    location ~ ^/admin/sessions/ { return 204; }
    location ~ ^/admin/identities/[^/]+\$ { return 200 $IDENTITY_BODY; }
    location = /admin/identities { return 200 '[]\n'; }
  }
}
EOF
cat > "$RUN/proxy.conf" <<EOF
daemon off;
user root;
worker_processes 2;
pid $RUN/proxy.pid;
error_log $RUN/logs/proxy-error.log warn;
events { worker_connections 4096; }
http {
  $NGINX_COMMON
  # The gateway's settings: keep-alive pool of 128 idle connections for 90 s, 2 s connect,
  # 15 s response timeout, 64 KiB of request head, request bodies streamed, forwarding fields.
  upstream kratos {
    server 127.0.0.1:$UP;
    keepalive 128;
    keepalive_timeout 90s;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$NGX backlog=4096;
    client_max_body_size 0;
    large_client_header_buffers 4 64k;
    location / {
      proxy_pass http://kratos;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header Accept-Encoding identity;
      proxy_connect_timeout 2s;
      proxy_read_timeout 15s;
      proxy_request_buffering off;
    }
  }
}
EOF
"$NGINX" -t -q -c "$RUN/upstream.conf" -p "$RUN" 2>&1 | grep -v 'the "user" directive' || true
"$NGINX" -c "$RUN/upstream.conf" -p "$RUN" &
PIDS[upstream]=$!
"$NGINX" -c "$RUN/proxy.conf" -p "$RUN" &
PIDS[nginx]=$!

wait_http() { # url, seconds
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
wait_http "http://127.0.0.1:$UP/health/alive" 20 || die "upstream did not start"
wait_http "http://127.0.0.1:$NGX/health/alive" 20 || die "nginx proxy did not start"

# ---------------------------------------------------------------------------------------------
log "gateways"
rss_mb() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
reset_hwm() { echo 5 > "/proc/$1/clear_refs"; }

start_gateway() { # name binary
  local g=$1 bin=$2
  cat > "$RUN/$g.yaml" <<EOF
listen:
  public: 127.0.0.1:${PUBLIC[$g]}
  ops: 127.0.0.1:${OPS[$g]}
upstream:
  public: http://127.0.0.1:$UP
  admin: http://127.0.0.1:$UPADMIN
blocklist:
  path: $L/$g/blocklist.yaml
EOF
  local s0 s1
  s0=$(date +%s.%N)
  "$bin" --config "$RUN/$g.yaml" --log-format json > "$RUN/logs/$g.log" 2>&1 &
  PIDS[$g]=$!
  wait_http "http://127.0.0.1:${OPS[$g]}/readyz" 120 || die "$g did not become ready (see $RUN/logs/$g.log)"
  s1=$(date +%s.%N)
  echo "  $g: pid ${PIDS[$g]}, ready in $(calc "$s1 - $s0" 2) s, RSS $(rss_mb "${PIDS[$g]}") MB"
  if [ "$g" = gw1m ]; then
    value startup_gw1m_s "$(calc "$s1 - $s0" 2)"
    value startup_peak_rss_gw1m "$(hwm_mb "${PIDS[$g]}")"
  fi
}
GATEWAYS=(gw10 gw1m gwmail)
start_gateway gw10 "$BIN"
start_gateway gw1m "$BIN"
start_gateway gwmail "$BIN"
if [ -n "$BASELINE" ]; then start_gateway gwbase "$OUT/kratos-gate-baseline"; GATEWAYS+=(gwbase); fi
sleep 1
for g in "${GATEWAYS[@]}"; do value "idle_rss_$g" "$(rss_mb "${PIDS[$g]}")"; done

# ---------------------------------------------------------------------------------------------
url() { # target workload
  local port
  case "$1" in direct) port=$UP ;; nginx) port=$NGX ;; *) port=${PUBLIC[$1]} ;; esac
  case "$2" in
    pass) echo "http://127.0.0.1:$port/health/alive" ;;
    whoami) echo "http://127.0.0.1:$port/sessions/whoami" ;;
    login) echo "http://127.0.0.1:$port/self-service/login?flow=6f5a3c2e-1d4b-4a59-9e8f-7c6b5a4d3e2f" ;;
  esac
}
cat > "$RUN/wrk/pass.lua" <<'EOF'
wrk.headers["Accept"] = "application/json"
EOF
cat > "$RUN/wrk/whoami.lua" <<EOF
wrk.headers["Accept"] = "application/json"
wrk.headers["X-Session-Token"] = "$TOKEN"
EOF
cat > "$RUN/wrk/login.lua" <<EOF
wrk.method = "POST"
wrk.headers["Accept"] = "application/json"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$LOGIN_REQUEST'
EOF
load_args() { # workload -> LOAD_ARGS
  case "$1" in
    pass) LOAD_ARGS=(-H "Accept: application/json") ;;
    whoami) LOAD_ARGS=(-H "Accept: application/json" -H "X-Session-Token: $TOKEN") ;;
    login) LOAD_ARGS=(--method POST -H "Accept: application/json" -H "Content-Type: application/json"
      --body "$LOGIN_REQUEST") ;;
  esac
}

# CPU time per request of the proxy under test: what its throughput becomes once the machine
# is saturated, and less at the mercy of the other processes than requests/s, which moves by
# 10-30 % between rounds on a shared machine. Not immune either (batching and caches change
# with contention): compare medians of several rounds. user+system clock ticks of the
# target's processes: nginx's master and workers, a gateway's process. /proc/PID/stat covers
# every thread, including threads that exited (a sum over /proc/PID/task/*/stat would lose
# those). Fields 14 and 15, counted after the last ')' since comm may contain spaces.
cpu_ticks() { # target -> clock ticks, or - for direct
  local pids
  case "$1" in
    direct) echo -; return ;;
    nginx) pids="${PIDS[nginx]} $(pgrep -P "${PIDS[nginx]}")" ;; # master and workers
    *) pids=${PIDS[$1]} ;;
  esac
  for p in $pids; do cat "/proc/$p/stat"; done \
    | awk '{ sub(/.*\) /, ""); t += $12 + $13 } END { print t }'
}
cpu_delta() { # ticks-before ticks-after -> ticks, or -
  if [ "$1" = - ]; then echo -; else echo $(($2 - $1)); fi
}

RESULTS=$RUN/results.tsv
: > "$RESULTS"
run_wrk() { # round workload target
  local f="$RUN/wrk/$2-$3-$1.txt" c0
  c0=$(cpu_ticks "$3")
  timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency \
    -s "$RUN/wrk/$2.lua" "$(url "$3" "$2")" > "$f" 2>&1 || die "wrk failed: $(cat "$f")"
  local r
  r=$($PY "$ROOT/bench/tools.py" parse wrk "$f" "$(cpu_delta "$c0" "$(cpu_ticks "$3")")")
  printf 'conc\t%s\t%s\t%s\t%s\n' "$2" "$3" "$1" "$r" >> "$RESULTS"
  printf '  round %s %-7s %-7s %s\n' "$1" "$2" "$3" "$r"
}
run_load() { # round workload target rate [kind] [duration]
  local f="$RUN/wrk/load-$2-$3-$1-${5:-rate}.json" d=${6:-$DURATION} c0
  load_args "$2"
  c0=$(cpu_ticks "$3")
  timeout $((d + 30)) "$LOAD" --url "$(url "$3" "$2")" --rate "$4" --duration "$d" \
    --connections "$CONNS" "${LOAD_ARGS[@]}" > "$f" 2>"$f.err" || die "load generator failed: $(cat "$f.err")"
  local r
  r=$($PY "$ROOT/bench/tools.py" parse load "$f" "$(cpu_delta "$c0" "$(cpu_ticks "$3")")")
  printf '%s\t%s\t%s\t%s\t%s\n' "${5:-rate}" "$2" "$3" "$1" "$r" >> "$RESULTS"
  printf '  round %s %-7s %-7s %-5s %s\n' "$1" "$2" "$3" "${5:-rate}" "$r"
}

# Responses must be right before anything is timed.
log "smoke checks"
for t in direct nginx "${GATEWAYS[@]}"; do
  for w in pass whoami login; do
    load_args "$w"
    code=$(timeout 20 "$LOAD" --url "$(url "$t" "$w")" --count 1 "${LOAD_ARGS[@]}" \
      | $PY -c 'import json,sys; print(",".join(json.load(sys.stdin)["status"]))')
    [ "$code" = 200 ] || die "$t $w answered $code"
  done
done
curl -fsS -H "X-Session-Token: $TOKEN" "$(url gw10 whoami)" | grep -q "$IDENTITY" || die "whoami body"
curl -fsS -X POST -H 'Content-Type: application/json' -d "$LOGIN_REQUEST" "$(url gw10 login)" | grep -q "$TOKEN" \
  || die "the login body did not come through the gateway"
echo "  every target answers 200 with the fixture bodies"

log "warm-up"
for t in direct nginx "${GATEWAYS[@]}"; do
  timeout 20 wrk -t1 -c"$CONNS" -d1s -s "$RUN/wrk/login.lua" "$(url "$t" login)" > /dev/null
  timeout 20 wrk -t1 -c"$CONNS" -d1s -s "$RUN/wrk/whoami.lua" "$(url "$t" whoami)" > /dev/null
done

# ---------------------------------------------------------------------------------------------
log "fixed concurrency: $ROUNDS rounds × ${DURATION}s, $CONNS connections"
CELLS=()
for w in pass whoami login; do
  for t in direct nginx "${GATEWAYS[@]}"; do CELLS+=("$w:$t"); done
done
n=${#CELLS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  # A different rotation (and direction) each round: no cell always follows the same one.
  for ((i = 0; i < n; i++)); do
    if ((r % 2)); then j=$(((i + (r - 1) * 5) % n)); else j=$(((n - 1 - i + (r - 1) * 5) % n)); fi
    c=${CELLS[$j]}
    run_wrk "$r" "${c%%:*}" "${c##*:}"
  done
done
for g in "${GATEWAYS[@]}"; do value "rss_after_$g" "$(rss_mb "${PIDS[$g]}")"; done

if [ "$RATE" = auto ]; then
  RATE=$($PY - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kind, w, t, r, rps, *_ = line.split("\t")
    if kind == "conc" and t in ("direct", "nginx", "gw10"):
        rows.setdefault((w, t), []).append(float(rps))
slowest = min(statistics.median(v) for v in rows.values())
print(max(100, int(slowest * 0.5 / 100) * 100))
EOF
)
fi
echo "rate=$RATE" >> "$VALUES"

log "fixed rate: $RATE req/s, $ROUNDS rounds × ${DURATION}s"
CELLS=()
for w in pass whoami login; do
  for t in direct nginx gw10 ${BASELINE:+gwbase}; do CELLS+=("$w:$t"); done
done
n=${#CELLS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < n; i++)); do
    if ((r % 2)); then j=$(((i + (r - 1) * 4) % n)); else j=$(((n - 1 - i + (r - 1) * 4) % n)); fi
    c=${CELLS[$j]}
    run_load "$r" "${c%%:*}" "${c##*:}" "$RATE"
  done
done

# ---------------------------------------------------------------------------------------------
log "upstream calls per whoami"
upstream_requests() { curl -fsS "http://127.0.0.1:$UP/nginx_status" | awk 'NR==3{print $3}'; }
for g in gw10 gwmail; do
  a=$(upstream_requests)
  timeout 60 "$LOAD" --url "$(url "$g" whoami)" --count 200 --connections 4 -H "X-Session-Token: $TOKEN" > /dev/null
  b=$(upstream_requests)
  # One status request is counted between a and b.
  calls=$(calc "($b - $a - 1) / 200" 2)
  if [ "$g" = gw10 ]; then value whoami_upstream_calls "$calls"; else value whoami_upstream_calls_gwmail "$calls"; fi
done

# ---------------------------------------------------------------------------------------------
log "100 MB upload (JSON content type: the gateway copies the start for the login identifier)"
upload() { # target -> seconds
  curl -sS -o /dev/null --max-time 120 -w '%{http_code} %{time_total}\n' -T "$RUN/stage/upload-100m.bin" \
    -H 'Content-Type: application/json' "http://127.0.0.1:$1/upload/blob-$2"
}
for t in direct nginx; do
  port=$UP; [ "$t" = nginx ] && port=$NGX
  read -r code secs < <(upload "$port" "$t")
  if [ "$code" = 201 ] || [ "$code" = 204 ]; then value "upload_s_$t" "$secs"; else echo "  upload $t answered $code"; fi
  rm -f "$DAV"/upload/blob-*
done
GW=${PIDS[gw10]}
value upload_rss_before "$(rss_mb "$GW")"
reset_hwm "$GW"
read -r code secs < <(upload "${PUBLIC[gw10]}" gw10)
if [ "$code" = 201 ] || [ "$code" = 204 ]; then
  [ "$(stat -c %s "$DAV/upload/blob-gw10")" = $((100 * 1024 * 1024)) ] || die "upload arrived incomplete"
  value upload_s_gw10 "$secs"
  value upload_rss_max "$(hwm_mb "$GW")"
  value upload_rss_delta "$(calc "$(hwm_mb "$GW") - $(grep upload_rss_before "$VALUES" | cut -d= -f2)" 1)"
else
  echo "  upload through the gateway answered $code (see logs/upstream-error.log)"
fi
rm -f "$DAV"/upload/blob-*

# ---------------------------------------------------------------------------------------------
log "reload: 1,000,000 ids"
GW=${PIDS[gw1m]}
# Entries in force, all kinds (`kratos_gate_blocklist_entries{kind=…}`).
gauge() { curl -fsS --max-time 2 "http://127.0.0.1:${OPS[$1]}/metrics" | awk '$1 ~ /^kratos_gate_blocklist_entries[{]/ {s += $2; n++} END {if (n) print s}'; }
swap() { # gateway file expected -> seconds from rename to gauge
  cp "$2" "$RUN/stage/next.yaml"
  local s0 deadline
  s0=$(date +%s.%N)
  mv "$RUN/stage/next.yaml" "$L/$1/blocklist.yaml"
  deadline=$(( $(date +%s) + 30 ))
  until [ "$(gauge "$1")" = "$3" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$1 did not load $2 within 30 s"
    sleep 0.01
  done
  calc "$(date +%s.%N) - $s0" 3
}
reset_hwm "$GW"
times=()
cpus=()
TCK=$(getconf CLK_TCK)
for i in 1 2 3 4 5; do
  # The gateway is otherwise idle here: its CPU time across the swap (and the half second
  # after it, when the SHA-256 is finished and the audit logged) is the reload's.
  c0=$(cpu_ticks gw1m)
  if ((i % 2)); then t=$(swap gw1m "$RUN/stage/ids-1m-plus1.yaml" 1000001); else t=$(swap gw1m "$RUN/stage/ids-1m.yaml" 1000000); fi
  sleep 0.5
  c=$(( ($(cpu_ticks gw1m) - c0) * 1000 / TCK ))
  echo "  reload $i: $t s, $c ms of CPU"
  times+=("$t")
  cpus+=("$c")
done
value reload_cpu_ms_median "$(printf '%s\n' "${cpus[@]}" | sort -n | sed -n 3p)"
value reload_s_median "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)"
value reload_s_max "$(printf '%s\n' "${times[@]}" | sort -n | tail -1)"
value reload_peak_rss "$(hwm_mb "$GW")"
logged=$(grep 'blocklist reloaded' "$RUN/logs/gw1m.log" | grep -o '"elapsed_ms":[0-9.]*' | cut -d: -f2 | sort -n || true)
if [ -n "$logged" ]; then
  value reload_log_ms_median "$(echo "$logged" | sed -n "$(( ($(echo "$logged" | wc -l) + 1) / 2 ))p")"
fi
sleep 1
value reload_steady_rss "$(rss_mb "$GW")"

log "p99 while the 1,000,000-id file is rewritten every second (whoami at $RATE req/s)"
echo "reload_rate=$RATE" >> "$VALUES"
echo "rewrite_rounds=$REWRITE_ROUNDS" >> "$VALUES"
RD=$((DURATION * 2))
# Each second a new file takes the gateway's path (a new inode, as a ConfigMap update or an
# editor's save gives), hard-linked to one of two files written before the run: copying
# 41 MB every second would cost the 2 shared cores tens of milliseconds of kernel time
# that shows in the p99 whichever process reads the file (measured apart, `cp` into a path
# the gateway does not read: p99 3.9–4.9 → 8.7–10.4 ms in two rounds of three). One python
# process does it (tools.py rewrite): a shell loop started `ln`, `mv` and `sleep` every
# second, which alone took the p99 to 1.23× at 28,200 req/s (bench/rewrites.sh, a file the
# gateway does not read). The "control" cell measures what the rewriting costs by itself:
# the same rewriter on a file the gateway does not read.
rewriting() { # path -> pid of the rewriter
  $PY "$ROOT/bench/tools.py" rewrite "$1" "$RUN/stage/ids-1m.yaml" "$RUN/stage/ids-1m-plus1.yaml" "$1.next" &
  RELOADER_PID=$!
}
ln -f "$RUN/stage/ids-1m.yaml" "$RUN/stage/control.yaml"
before=$(grep -c 'blocklist reloaded' "$RUN/logs/gw1m.log" || true)
for ((r = 1; r <= REWRITE_ROUNDS; r++)); do
  run_load "$r" whoami gw1m "$RATE" quiet "$RD"
  for k in busy control; do
    if [ $k = busy ]; then rewriting "$L/gw1m/blocklist.yaml"; else rewriting "$RUN/stage/control.yaml"; fi
    # The rewriter's start (python, tens of ms of CPU) and its first rename stay out of the
    # measured seconds, whose p99 a single burst of that size moves.
    sleep 1.2
    run_load "$r" whoami gw1m "$RATE" $k "$RD"
    kill "$RELOADER_PID"; wait "$RELOADER_PID" 2>/dev/null || true
    RELOADER_PID=""
    sleep 1.5
  done
done
after=$(grep -c 'blocklist reloaded' "$RUN/logs/gw1m.log" || true)
value reload_count_busy "$((after - before))"
for k in quiet busy control; do
  value "reload_p99_$k" "$(awk -F'\t' -v k=$k '$1==k{print $7}' "$RESULTS" | sort -n | sed -n "$(( (REWRITE_ROUNDS + 1) / 2 ))p")"
done

# ---------------------------------------------------------------------------------------------
if [ "$QUICK" = 0 ]; then
  log "import: 10 → 1,000,000 ids"
  GW=${PIDS[gw10]}
  reset_hwm "$GW"
  value import_s "$(swap gw10 "$RUN/stage/ids-1m.yaml" 1000000)"
  value import_peak_rss "$(hwm_mb "$GW")"
fi

if [ "$MICRO" = 1 ]; then
  log "micro-benchmarks"
  (cd "$ROOT" && timeout 600 cargo run --release --locked --quiet --example micro) | tee "$RUN/micro.txt"
fi

log "adversarial echoes: memory and Kratos calls per request"
ADV_ARGS=(--gateway "$BIN")
[ -n "$BASELINE" ] && ADV_ARGS+=(--gateway "$OUT/kratos-gate-baseline")
$PY "$ROOT/bench/adversarial.py" "${ADV_ARGS[@]}" | tee "$RUN/adversarial.md" || true

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$RUN/machine.txt"
echo "measure_seconds=$(( $(date +%s) - MEASURE_T0 ))" >> "$RUN/machine.txt"
cleanup
trap - EXIT

log "report"
$PY "$ROOT/bench/tools.py" report "$RUN" "$ROOT/BENCHMARKS.md" "$COMMAND"
echo
echo "raw results: $RUN (results.tsv, values.txt, logs/); total $(( $(date +%s) - T0 )) s"
