#!/usr/bin/env bash
# Allocator A/B (issue 14.1): the same gateway built with glibc's malloc, mimalloc and jemalloc,
# side by side in one run, each gateway holding the 1,000,000-id list:
#
#  1. CPU time per request (user+system of the gateway / requests) and p99, pass-through GET
#     with wrk at fixed concurrency and with the open-loop load generator at a fixed rate, in
#     interleaved and rotated rounds (a noisy moment hits every build alike);
#  2. memory: idle RSS, RSS after the load runs ("steady"), then RELOADS reloads of the
#     1,000,000-id file (it and a copy with one more id renamed in turn over the gateway's
#     file, the builds interleaved), the peak (VmHWM) and the RSS after each reload and 2 s
#     after the last; the gateway's CPU time per reload and its logged elapsed_ms.
#
# Usage: bench/alloc.sh NAME=BINARY...   (e.g. glibc=target/bench/alloc/kratos-gate-glibc)
#   The load generator comes from $CARGO_TARGET_DIR/release (cargo build --release --features
#   bench). Environment: ROUNDS (3), DURATION (3 s), CONNS (32), RATE (8000), RELOADS (20),
#   CARGO_TARGET_DIR (target), BENCH_OUT ($CARGO_TARGET_DIR/bench-alloc).
# Prints a Markdown table (also in $BENCH_OUT/alloc.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMMAND="bench/alloc.sh $*"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CONNS=${CONNS:-32}
RATE=${RATE:-8000}
RELOADS=${RELOADS:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-alloc}
LOAD=$CARGO_TARGET_DIR/release/kratos-gate-bench-load
PY=python3
UP=18833
declare -a NAMES=()
declare -A BINS=() PUBLIC=() OPS=() PIDS=()
port=18855
for a in "$@"; do
  n=${a%%=*}
  b=${a#*=}
  [ -x "$b" ] || { echo "alloc: no executable $b" >&2; exit 2; }
  NAMES+=("$n")
  BINS[$n]=$b
  PUBLIC[$n]=$port
  OPS[$n]=$((port + 1))
  port=$((port + 10))
done
[ ${#NAMES[@]} -ge 1 ] || { echo "usage: bench/alloc.sh NAME=BINARY..." >&2; exit 2; }
[ -x "$LOAD" ] || { echo "alloc: no load generator at $LOAD" >&2; exit 2; }

die() { echo "alloc: $*" >&2; exit 1; }
log() { printf '\n== %s\n' "$*"; }
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
calc() { awk "BEGIN{printf \"%.${2:-1}f\", $1}"; }
rss_mb() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mb() { awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
reset_hwm() { echo 5 > "/proc/$1/clear_refs"; }
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
wait_http() {
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

rm -rf "${OUT:?}" && mkdir -p "$OUT"/{logs,stage,tmp}
RUN=$OUT
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$RUN/stage/ids-1m.yaml" 1
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$RUN/stage/ids-1m-plus1.yaml" 1 1

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cat > "$RUN/upstream.conf" <<EOF
daemon off;
user root;
worker_processes 1;
pid $RUN/upstream.pid;
error_log $RUN/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path $RUN/tmp/body;
  proxy_temp_path $RUN/tmp/proxy;
  fastcgi_temp_path $RUN/tmp/fastcgi;
  uwsgi_temp_path $RUN/tmp/uwsgi;
  scgi_temp_path $RUN/tmp/scgi;
  server {
    listen 127.0.0.1:$UP backlog=4096;
    location = /health/alive { return 200 '{"status":"ok"}\n'; }
  }
}
EOF
"$NGINX" -c "$RUN/upstream.conf" -p "$RUN" 2>/dev/null &
PIDS[upstream]=$!
wait_http "http://127.0.0.1:$UP/health/alive" 20 || die "upstream did not start"

gauge() { curl -fsS --max-time 2 "http://127.0.0.1:${OPS[$1]}/metrics" | awk '$1 ~ /^kratos_gate_blocklist_entries[{]/ {s += $2; n++} END {if (n) print s}'; }
declare -A V=()
for n in "${NAMES[@]}"; do
  mkdir -p "$RUN/lists/$n"
  cp "$RUN/stage/ids-1m.yaml" "$RUN/lists/$n/blocklist.yaml"
  cat > "$RUN/$n.yaml" <<EOF
listen:
  public: 127.0.0.1:${PUBLIC[$n]}
  ops: 127.0.0.1:${OPS[$n]}
upstream:
  public: http://127.0.0.1:$UP
  admin: http://127.0.0.1:$UP
blocklist:
  path: $RUN/lists/$n/blocklist.yaml
EOF
  "${BINS[$n]}" --config "$RUN/$n.yaml" --log-format json > "$RUN/logs/$n.log" 2>&1 &
  PIDS[$n]=$!
  wait_http "http://127.0.0.1:${OPS[$n]}/readyz" 120 || die "$n did not become ready"
done
sleep 2
for n in "${NAMES[@]}"; do V[$n.idle]=$(rss_mb "${PIDS[$n]}"); done

: > "$RUN/results.tsv"
log "pass-through: $ROUNDS rounds × ${DURATION}s, wrk -c$CONNS and $RATE req/s"
m=${#NAMES[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < m; i++)); do
    if ((r % 2)); then j=$(((i + r) % m)); else j=$(((m - 1 - i + r) % m)); fi
    n=${NAMES[$j]}
    url="http://127.0.0.1:${PUBLIC[$n]}/health/alive"
    c0=$(ticks "${PIDS[$n]}")
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url" > "$RUN/wrk-$n-$r.txt"
    res=$($PY "$ROOT/bench/tools.py" parse wrk "$RUN/wrk-$n-$r.txt" "$(( $(ticks "${PIDS[$n]}") - c0 ))")
    printf 'conc\t%s\t%s\t%s\n' "$n" "$r" "$res" | tee -a "$RUN/results.tsv"
    c0=$(ticks "${PIDS[$n]}")
    "$LOAD" --url "$url" --rate "$RATE" --duration "$DURATION" --connections "$CONNS" > "$RUN/load-$n-$r.json"
    res=$($PY "$ROOT/bench/tools.py" parse load "$RUN/load-$n-$r.json" "$(( $(ticks "${PIDS[$n]}") - c0 ))")
    printf 'rate\t%s\t%s\t%s\n' "$n" "$r" "$res" | tee -a "$RUN/results.tsv"
  done
done
for n in "${NAMES[@]}"; do V[$n.steady]=$(rss_mb "${PIDS[$n]}"); reset_hwm "${PIDS[$n]}"; done

log "$RELOADS reloads of the 1,000,000-id list per build"
for ((k = 1; k <= RELOADS; k++)); do
  if ((k % 2)); then f=ids-1m-plus1.yaml; want=1000001; else f=ids-1m.yaml; want=1000000; fi
  for n in "${NAMES[@]}"; do
    c0=$(ticks "${PIDS[$n]}")
    cp "$RUN/stage/$f" "$RUN/stage/next-$n.yaml"
    mv "$RUN/stage/next-$n.yaml" "$RUN/lists/$n/blocklist.yaml"
    deadline=$(( $(date +%s) + 30 ))
    until [ "$(gauge "$n")" = "$want" ]; do
      [ "$(date +%s)" -lt "$deadline" ] || die "$n did not reload"
      sleep 0.01
    done
    sleep 0.2
    printf 'reload\t%s\t%s\t%s\t%s\n' "$n" "$k" "$(( $(ticks "${PIDS[$n]}") - c0 ))" "$(rss_mb "${PIDS[$n]}")" >> "$RUN/results.tsv"
  done
done
sleep 2
for n in "${NAMES[@]}"; do
  V[$n.peak]=$(hwm_mb "${PIDS[$n]}")
  V[$n.after]=$(rss_mb "${PIDS[$n]}")
  V[$n.elapsed]=$(grep 'blocklist reloaded' "$RUN/logs/$n.log" | grep -o '"elapsed_ms":[0-9.]*' | cut -d: -f2 | sort -n \
    | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}')
done

{
  echo "Command: \`$COMMAND\` ($(date -u +%Y-%m-%dT%H:%MZ), load average at end $(cut -d' ' -f1-3 /proc/loadavg); ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS RATE=$RATE RELOADS=$RELOADS). Medians of the rounds; every gateway holds 1,000,000 ids."
  echo
  echo "| allocator | CPU µs/req (wrk) | req/s (wrk) | p99 ms (wrk) | CPU µs/req ($RATE/s) | p99 ms ($RATE/s) | idle RSS MB | steady RSS MB | CPU ms per reload | logged reload ms | RSS max over the reloads MB | peak (VmHWM) MB | RSS 2 s after reload $RELOADS MB | after / steady |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in "${NAMES[@]}"; do
    med() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
    R=$RUN/results.tsv
    cpu_c=$(awk -F'\t' -v n="$n" '$1=="conc" && $2==n {print $8}' "$R" | med)
    rps_c=$(awk -F'\t' -v n="$n" '$1=="conc" && $2==n {print $4}' "$R" | med)
    p99_c=$(awk -F'\t' -v n="$n" '$1=="conc" && $2==n {print $6}' "$R" | med)
    cpu_r=$(awk -F'\t' -v n="$n" '$1=="rate" && $2==n {print $8}' "$R" | med)
    p99_r=$(awk -F'\t' -v n="$n" '$1=="rate" && $2==n {print $6}' "$R" | med)
    tk=$(getconf CLK_TCK)
    rcpu=$(awk -F'\t' -v n="$n" -v t="$tk" '$1=="reload" && $2==n {printf "%.0f\n", $4 * 1000 / t}' "$R" | med)
    rmax=$(awk -F'\t' -v n="$n" '$1=="reload" && $2==n && $5 > m {m = $5} END {print m}' "$R")
    echo "| $n | $cpu_c | $rps_c | $p99_c | $cpu_r | $p99_r | ${V[$n.idle]} | ${V[$n.steady]} | $rcpu | ${V[$n.elapsed]} | $rmax | ${V[$n.peak]} | ${V[$n.after]} | $(calc "${V[$n.after]} / ${V[$n.steady]}" 2) |"
  done
} | tee "$RUN/alloc.md"
