#!/usr/bin/env bash
# p99 of whoami at a fixed rate while the 1,000,000-id blocklist is replaced every second,
# against the p99 without (issue 14: "p99 while the 1,000,000-id file is rewritten every
# second ≤ 1.2× the p99 without"), for one or more gateway builds side by side. The same
# measurement as bench/run.sh's "rewritten every second" section, without the rest of the
# suite, so that builds can be compared in one run: every round runs each build quiet, busy
# and control, in an order that turns round by round, so that machine noise falls on all alike.
#
# Each busy second a new inode takes the gateway's path (hard-linked to one of two files
# written before the run, as in run.sh: the header comment's count changes and an id is
# appended); each control second the same happens to a file no gateway reads. The upstream
# is nginx answering whoami with the fixture and the identity header.
#
# Usage: bench/rewrites.sh NAME=BINARY...   (e.g. before=/tmp/kg-before now=target/release/kratos-gate)
# Environment: RATE (20000 req/s), ROUNDS (5), DURATION (6 s per cell), CONNS (32),
#   CARGO_TARGET_DIR (target; the load generator is $CARGO_TARGET_DIR/release/kratos-gate-bench-load,
#   from `cargo build --release --features bench`), BENCH_OUT ($CARGO_TARGET_DIR/bench-rewrites).
# Prints a Markdown table (also $BENCH_OUT/rewrites.md): medians over the rounds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMMAND="bench/rewrites.sh $*"
RATE=${RATE:-20000}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-6}
CONNS=${CONNS:-32}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-rewrites}
LOAD=$CARGO_TARGET_DIR/release/kratos-gate-bench-load
PY=python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
declare -a NAMES=()
declare -A BINS=() PIDS=() PUBLIC=()
for a in "$@"; do
  n=${a%%=*}
  b=${a#*=}
  [ -x "$b" ] || { echo "rewrites: no executable $b" >&2; exit 2; }
  NAMES+=("$n")
  BINS[$n]=$b
done
[ ${#NAMES[@]} -ge 1 ] || { echo "usage: bench/rewrites.sh NAME=BINARY..." >&2; exit 2; }
[ -x "$LOAD" ] || { echo "rewrites: no load generator at $LOAD (cargo build --release --features bench)" >&2; exit 2; }
[ -x "$NGINX" ] || { echo "rewrites: nginx is missing" >&2; exit 2; }

die() { echo "rewrites: $*" >&2; exit 1; }
REWRITER=""
cleanup() {
  local pid
  [ -n "$REWRITER" ] && kill "$REWRITER" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_http() {
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
reloads() { grep -c 'blocklist reloaded' "$1" || true; }

rm -rf "${OUT:?}" && mkdir -p "$OUT"/{logs,stage,lists,tmp,load}
S=$OUT/stage
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$S/ids-1m.yaml" 1
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$S/ids-1m-plus1.yaml" 1 1
FIX=$ROOT/tests/fixtures/kratos/synthesized
IDENTITY=$($PY "$ROOT/bench/tools.py" json-id "$FIX/whoami-200.json" identity id)
TOKEN=$($PY "$ROOT/bench/tools.py" json-id "$FIX/native-login-200.json" session_token)
WHOAMI_BODY=$($PY "$ROOT/bench/tools.py" nginx-string "$FIX/whoami-200.json")

UP=19533
cat > "$OUT/upstream.conf" <<EOF
daemon off;
user root;
worker_processes 2;
pid $OUT/upstream.pid;
error_log $OUT/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path $OUT/tmp/body;
  proxy_temp_path $OUT/tmp/proxy;
  fastcgi_temp_path $OUT/tmp/fastcgi;
  uwsgi_temp_path $OUT/tmp/uwsgi;
  scgi_temp_path $OUT/tmp/scgi;
  server_tokens off;
  default_type "application/json; charset=utf-8";
  server {
    listen 127.0.0.1:$UP backlog=4096;
    location = /health/alive { return 200 '{"status":"ok"}\n'; }
    location = /sessions/whoami {
      add_header X-Kratos-Authenticated-Identity-Id $IDENTITY;
      add_header Cache-Control "private, no-cache, no-store, must-revalidate";
      return 200 $WHOAMI_BODY;
    }
  }
  server {
    listen 127.0.0.1:$((UP + 1));
    location / { return 204; }
  }
}
EOF
"$NGINX" -c "$OUT/upstream.conf" -p "$OUT" &
PIDS[upstream]=$!
wait_http "http://127.0.0.1:$UP/health/alive" 20 || die "upstream did not start"

port=19560
for n in "${NAMES[@]}"; do
  mkdir -p "$OUT/lists/$n"
  cp "$S/ids-1m.yaml" "$OUT/lists/$n/blocklist.yaml"
  PUBLIC[$n]=$port
  cat > "$OUT/$n.yaml" <<CFG
listen:
  public: 127.0.0.1:$port
  ops: 127.0.0.1:$((port + 1))
upstream:
  public: http://127.0.0.1:$UP
  admin: http://127.0.0.1:$((UP + 1))
blocklist:
  path: $OUT/lists/$n/blocklist.yaml
CFG
  "${BINS[$n]}" --config "$OUT/$n.yaml" --log-format json > "$OUT/logs/$n.log" 2>&1 &
  PIDS[$n]=$!
  wait_http "http://127.0.0.1:$((port + 1))/readyz" 120 || die "$n did not become ready"
  curl -fsS -H "X-Session-Token: $TOKEN" "http://127.0.0.1:$port/sessions/whoami" | grep -q "$IDENTITY" \
    || die "$n: whoami did not come through"
  port=$((port + 10))
done
sleep 1

# Replaces $1 every second by the other of the two files, as a new inode (one process:
# tools.py rewrite); REWRITER is its pid.
rewriting() {
  $PY "$ROOT/bench/tools.py" rewrite "$1" "$S/ids-1m.yaml" "$S/ids-1m-plus1.yaml" "$1.next" &
  REWRITER=$!
}
ln -f "$S/ids-1m.yaml" "$S/control.yaml"
cell() { # round name kind
  local f="$OUT/load/$2-$3-$1.json"
  timeout $((DURATION + 30)) "$LOAD" --url "http://127.0.0.1:${PUBLIC[$2]}/sessions/whoami" \
    --rate "$RATE" --duration "$DURATION" --connections "$CONNS" \
    -H "Accept: application/json" -H "X-Session-Token: $TOKEN" > "$f" 2>"$f.err" \
    || die "load generator failed: $(cat "$f.err")"
  local r
  r=$($PY "$ROOT/bench/tools.py" parse load "$f")
  # rps, p50, p99, errors, CPU (-)
  printf '%s\t%s\t%s\t%s\n' "$2" "$3" "$1" "$r" >> "$OUT/results.tsv"
  printf '  round %s %-10s %-5s %s\n' "$1" "$2" "$3" "$r"
}

: > "$OUT/results.tsv"
declare -A BEFORE=()
for n in "${NAMES[@]}"; do BEFORE[$n]=$(reloads "$OUT/logs/$n.log"); done
k=${#NAMES[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < k; i++)); do
    n=${NAMES[$(((i + r) % k))]}
    cell "$r" "$n" quiet
    # busy: the gateway's file is rewritten; control: the same rewriter on a file no
    # gateway reads (what the rewriting costs the machine by itself).
    for kind in busy control; do
      if [ $kind = busy ]; then rewriting "$OUT/lists/$n/blocklist.yaml"; else rewriting "$S/control.yaml"; fi
      # The rewriter's start (python, tens of ms of CPU) and its first rename stay out of
      # the measured seconds, whose p99 a single burst of that size moves.
      sleep 1.2
      cell "$r" "$n" $kind
      kill "$REWRITER"; wait "$REWRITER" 2>/dev/null || true
      REWRITER=""
      sleep 1.5
    done
  done
done

med() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
{
  echo "Command: \`$COMMAND\` ($(date -u +%Y-%m-%dT%H:%MZ), RATE=$RATE, ROUNDS=$ROUNDS, DURATION=$DURATION, CONNS=$CONNS, load average at end $(cut -d' ' -f1-3 /proc/loadavg)). Medians over the rounds."
  echo
  echo "| build | p99 quiet ms | p99 busy ms | busy/quiet | p99 control ms | control/quiet | reloads while busy | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for n in "${NAMES[@]}"; do
    q=$(awk -F'\t' -v n="$n" '$1==n && $2=="quiet"{print $6}' "$OUT/results.tsv" | med)
    b=$(awk -F'\t' -v n="$n" '$1==n && $2=="busy"{print $6}' "$OUT/results.tsv" | med)
    c=$(awk -F'\t' -v n="$n" '$1==n && $2=="control"{print $6}' "$OUT/results.tsv" | med)
    echo "| $n | $q | $b | $(awk -v q="$q" -v b="$b" 'BEGIN{printf "%.2f", b / q}') | $c | $(awk -v q="$q" -v c="$c" 'BEGIN{printf "%.2f", c / q}') | $(( $(reloads "$OUT/logs/$n.log") - BEFORE[$n] )) | $(awk -F'\t' -v n="$n" '$1==n{e += $7} END {print e + 0}' "$OUT/results.tsv") |"
  done
} | tee "$OUT/rewrites.md"
