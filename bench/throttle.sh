#!/usr/bin/env bash
# Throttling benchmark (README, Throttling; issue 15): on loopback, in front of nginx imitating
# Kratos's login (200 with a session for the right password, 400 with 4000006 otherwise):
#
#  1. throughput of successful native logins (the throttle's check + reset on every login)
#     through a gateway with throttling off, with the in-process store and with Redis
#     (redis-server on loopback), in interleaved rounds of wrk at fixed concurrency; the
#     gateway's CPU time per request;
#  2. accuracy of the shared limit: attempts with a wrong password for one identifier, all
#     sent at once and spread over 3 gateways, with each gateway counting alone (in-process)
#     and with the 3 sharing one Redis: how many reached Kratos against the limit.
#
# Usage: bench/throttle.sh [--no-install] [--no-build]
# Environment: ROUNDS (3), DURATION (3 s), CONNS (32), ATTEMPTS (90 per accuracy trial),
#   TRIALS (5), CARGO_TARGET_DIR (target), BENCH_OUT ($CARGO_TARGET_DIR/bench-throttle).
# Writes the figures into BENCHMARKS.md between the throttle markers.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMMAND="bench/throttle.sh $*"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CONNS=${CONNS:-32}
ATTEMPTS=${ATTEMPTS:-90}
TRIALS=${TRIALS:-5}
INSTALL=1
BUILD=1
for a in "$@"; do
  case "$a" in
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-throttle}
export PATH="$HOME/.cargo/bin:$PATH"
UP=19433 UPADMIN=19434 REDIS=19379
declare -A PUBLIC=([off]=19455 [memory]=19456 [redis]=19457 [m1]=19461 [m2]=19462 [m3]=19463 [r1]=19471 [r2]=19472 [r3]=19473)
declare -A OPS=([off]=19491 [memory]=19492 [redis]=19493 [m1]=19494 [m2]=19495 [m3]=19496 [r1]=19497 [r2]=19498 [r3]=19499)
declare -A PIDS=()
T0=$(date +%s)
log() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - T0 ))"; }
die() { echo "bench: $*" >&2; exit 1; }
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

log "tools"
if [ "$INSTALL" = 1 ]; then
  missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in wrk curl python3 redis-server; do command -v $t >/dev/null || die "$t is missing"; done

BIN=$CARGO_TARGET_DIR/release/kratos-gate
if [ "$BUILD" = 1 ]; then
  log "build"
  (cd "$ROOT" && cargo build --release --locked --quiet)
fi
[ -x "$BIN" ] || die "no release binary at $BIN"
BUILT="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"

rm -rf "${OUT:?}"
mkdir -p "$OUT"/{logs,tmp,wrk}

log "upstream (nginx imitating Kratos's login) and redis-server"
FIX=$ROOT/tests/fixtures/kratos/synthesized
OK_BODY=$(python3 "$ROOT/bench/tools.py" nginx-string "$FIX/native-login-200.json")
FAIL_BODY=$(python3 - "$FIX/native-login-400-identity-disabled.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["ui"]["messages"] = [{"id": 4000006, "type": "error", "text": "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number."}]
body = json.dumps(d, separators=(",", ":"))
print("'" + body.replace("\\", "\\\\").replace("'", "\\'") + "\\n'")
EOF
)
cat > "$OUT/upstream.conf" <<EOF
daemon off;
worker_processes 1;
pid $OUT/upstream.pid;
error_log $OUT/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path $OUT/tmp/body;
  proxy_temp_path $OUT/tmp/proxy;
  fastcgi_temp_path $OUT/tmp/fastcgi;
  uwsgi_temp_path $OUT/tmp/uwsgi;
  scgi_temp_path $OUT/tmp/scgi;
  server {
    listen 127.0.0.1:$UP;
    location = /self-service/login {
      default_type "application/json; charset=utf-8";
      if (\$arg_outcome = fail) { return 400 $FAIL_BODY; }
      return 200 $OK_BODY;
    }
    location = /health/ready { return 200 '{"status":"ok"}'; }
  }
  server { listen 127.0.0.1:$UPADMIN; location / { return 404; } }
}
EOF
"$NGINX" -c "$OUT/upstream.conf" -p "$OUT" > "$OUT/logs/upstream.log" 2>&1 &
PIDS[upstream]=$!
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no > "$OUT/logs/redis.log" 2>&1 &
PIDS[redisd]=$!

wait_http() { # url seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
start_gateway() { # name throttle-yaml
  local g=$1
  mkdir -p "$OUT/$g"
  echo "identities: []" > "$OUT/$g/blocklist.yaml"
  cat > "$OUT/$g/gateway.yaml" <<EOF
listen:
  public: 127.0.0.1:${PUBLIC[$g]}
  ops: 127.0.0.1:${OPS[$g]}
upstream:
  public: http://127.0.0.1:$UP
  admin: http://127.0.0.1:$UPADMIN
blocklist:
  path: blocklist.yaml
$2
EOF
  "$BIN" --config "$OUT/$g/gateway.yaml" --log-format json > "$OUT/logs/$g.log" 2>&1 &
  PIDS[$g]=$!
  wait_http "http://127.0.0.1:${OPS[$g]}/readyz" 60 || die "$g did not become ready (see $OUT/logs/$g.log)"
}
# The throughput gateways never refuse: the rate limit is off, and every login succeeds (so
# the counters are reset each time).
FAST="  rate_limit: {submissions: 0}"
start_gateway off "throttle: {enabled: false}"
start_gateway memory "throttle:
  enabled: true
$FAST"
start_gateway redis "throttle:
  enabled: true
$FAST
  redis: {url: \"redis://127.0.0.1:$REDIS\"}"
LIMIT=5
for i in 1 2 3; do
  start_gateway "m$i" "throttle:
  enabled: true
  failures: {per_identifier_and_network: $LIMIT}
  rate_limit: {submissions: 0}"
  start_gateway "r$i" "throttle:
  enabled: true
  failures: {per_identifier_and_network: $LIMIT}
  rate_limit: {submissions: 0}
  redis: {url: \"redis://127.0.0.1:$REDIS\"}"
done
echo "  gateways: ${!PUBLIC[*]}"

LOGIN='{"method":"password","identifier":"alice@example.com","password":"correct horse battery staple"}'
# Each login names another identifier (one user logging in 32 times at once would be refused
# past the pair limit: attempts are counted while in flight).
cat > "$OUT/wrk/login.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Accept"] = "application/json"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{"method":"password","identifier":"user' .. n .. '@example.com","password":"correct horse battery staple"}')
end
EOF
url() { echo "http://127.0.0.1:${PUBLIC[$1]}/self-service/login?flow=6f5a3c2e-1d4b-4a59-9e8f-7c6b5a4d3e2f"; }
for g in off memory redis; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' -d "$LOGIN" "$(url $g)")
  [ "$code" = 200 ] || die "$g answered $code to a login"
  timeout 20 wrk -t1 -c"$CONNS" -d1s -s "$OUT/wrk/login.lua" "$(url $g)" > /dev/null
done

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
log "throughput: $ROUNDS rounds × ${DURATION}s, $CONNS connections, successful native logins"
RESULTS=$OUT/throughput.tsv
: > "$RESULTS"
for ((r = 1; r <= ROUNDS; r++)); do
  order=(off memory redis)
  ((r % 2)) || order=(redis memory off)
  for g in "${order[@]}"; do
    c0=$(ticks "${PIDS[$g]}")
    f=$OUT/wrk/$g-$r.txt
    timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s --latency \
      -s "$OUT/wrk/login.lua" "$(url $g)" > "$f" 2>&1 || die "wrk failed: $(cat "$f")"
    c1=$(ticks "${PIDS[$g]}")
    python3 - "$ROOT/bench" "$f" "$g" "$r" "$((c1 - c0))" >> "$RESULTS" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
import tools
rps, p50, p99, errors, requests = tools.parse_wrk(sys.argv[2])
hz = os.sysconf("SC_CLK_TCK")
cpu_us = int(sys.argv[5]) / hz * 1e6 / max(requests, 1)
print("\t".join(map(str, [sys.argv[3], sys.argv[4], rps, p50, p99, errors, cpu_us])))
EOF
    tail -1 "$RESULTS" | awk -F'\t' '{ printf "  round %s %-7s %8.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %s  %.0f µs CPU/req\n", $2, $1, $3, $4, $5, $6, $7 }'
  done
done

log "accuracy: $TRIALS trials of $ATTEMPTS wrong-password attempts at once over 3 gateways (limit $LIMIT)"
ACC=$OUT/accuracy.tsv
: > "$ACC"
for store in m r; do
  for ((t = 1; t <= TRIALS; t++)); do
    python3 - "$ATTEMPTS" "$store" "$t" "${PUBLIC[${store}1]}" "${PUBLIC[${store}2]}" "${PUBLIC[${store}3]}" >> "$ACC" <<'EOF'
import http.client, sys, threading
attempts, store, trial = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ports = [int(p) for p in sys.argv[4:7]]
who = "victim-%s-%s@example.com" % (store, trial)
body = '{"method":"password","identifier":"%s","password":"wrong"}' % who
statuses, lock, barrier = [], threading.Lock(), threading.Barrier(attempts)
def attempt(i):
    c = http.client.HTTPConnection("127.0.0.1", ports[i % 3], timeout=30)
    c.connect()
    barrier.wait()
    c.request("POST", "/self-service/login?flow=6f5a3c2e-1d4b-4a59-9e8f-7c6b5a4d3e2f&outcome=fail", body,
              {"Content-Type": "application/json", "Accept": "application/json"})
    s = c.getresponse().status
    with lock:
        statuses.append(s)
threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
for th in threads: th.start()
for th in threads: th.join()
print("\t".join(map(str, [store, trial, statuses.count(400), statuses.count(429), len(statuses) - statuses.count(400) - statuses.count(429)])))
EOF
    tail -1 "$ACC" | awk -F'\t' '{ printf "  %s trial %s: %s reached Kratos, %s refused (429), %s other\n", ($1 == "m" ? "in-process" : "redis     "), $2, $3, $4, $5 }'
  done
done

log "report"
python3 - "$RESULTS" "$ACC" "$ROOT/BENCHMARKS.md" "$COMMAND" "$BUILT" "$LIMIT" "$ATTEMPTS" "$ROUNDS" "$DURATION" "$CONNS" <<'EOF'
import statistics, sys, subprocess, datetime
res, acc, md, command, built, limit, attempts, rounds, duration, conns = sys.argv[1:11]
rows = {}
for line in open(res):
    g, r, rps, p50, p99, errors, cpu = line.rstrip("\n").split("\t")
    rows.setdefault(g, []).append((float(rps), float(p50), float(p99), int(errors), float(cpu)))
med = lambda g, i: statistics.median(v[i] for v in rows[g])
off = med("off", 0)
lines = []
lines.append("Run: `%s` on %s (%s cores, %s), build %s, %s rounds of %s s at %s connections, medians."
             % (command, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
                open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip(),
                built, rounds, duration, conns))
lines.append("")
lines.append("Successful native logins through one gateway, a new identifier each (every login: the check and count, then the reset; with Redis two scripts, one round trip each):")
lines.append("")
lines.append("| throttling | logins/s | vs off | p50 ms | p99 ms | gateway CPU µs/login | errors |")
lines.append("|---|---:|---:|---:|---:|---:|---:|")
for g, name in (("off", "off"), ("memory", "in-process store"), ("redis", "Redis (loopback)")):
    lines.append("| %s | %.0f | %.2fx | %.2f | %.2f | %.0f | %d |" % (
        name, med(g, 0), med(g, 0) / off, med(g, 1), med(g, 2), med(g, 4), sum(v[3] for v in rows[g])))
trials = {}
for line in open(acc):
    store, t, passed, refused, other = line.rstrip("\n").split("\t")
    trials.setdefault(store, []).append((int(passed), int(refused), int(other)))
lines.append("")
lines.append("Accuracy of the limit: %s attempts with a wrong password for one identifier, all released at once over 3 gateways (round robin), limit %s per identifier and network; attempts that reached Kratos, per trial:" % (attempts, limit))
lines.append("")
lines.append("| store | reached Kratos (each trial) | expected | refused 429 (each trial) |")
lines.append("|---|---|---:|---|")
for s, name, exp in (("m", "in-process (each gateway alone)", "%s per gateway" % limit), ("r", "one Redis for the 3", limit)):
    v = trials.get(s, [])
    lines.append("| %s | %s | %s | %s |" % (name, ", ".join(str(p) for p, _, _ in v), exp, ", ".join(str(r) for _, r, _ in v)))
block = "\n".join(lines) + "\n"
text = open(md).read()
start, end = "<!-- throttle-bench:start -->", "<!-- throttle-bench:end -->"
if start in text and end in text:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    text = head + start + "\n" + block + end + tail
else:
    text = text.rstrip("\n") + "\n\n## Throttling\n\n" + start + "\n" + block + end + "\n"
open(md, "w").write(text)
print(block)
EOF
