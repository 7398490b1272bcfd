#!/usr/bin/env bash
# The cost of reloading a 1,000,000-id blocklist after a small edit (issue 14: "reload of a
# one-line edit ≤ 30 ms CPU"), per kind of edit, for one or more gateway builds side by side.
#
# Edits, each applied RELOADS times (the edited file and the original renamed in turn over
# the gateway's file, as an editor or a ConfigMap update does):
#   end      one id appended after the last line
#   middle   one id line in the middle of the file replaced by another id
#   start    the first id line replaced by another id
#   bench    the file bench/run.sh alternates with (the header comment's count changes too)
# Measured per reload: the gateway's CPU time (user+system from /proc/PID/stat around the
# reload; the gateway is otherwise idle and the script waits on its log, not its metrics),
# its logged `elapsed_ms` (read to in force) and whether it read the change alone
# (`incremental`). Prints a Markdown table (also $BENCH_OUT/reload_cost.md).
#
# Usage: bench/reload_cost.sh NAME=BINARY...   (e.g. now=target/release/kratos-gate)
# Environment: RELOADS (20), CARGO_TARGET_DIR (target), BENCH_OUT ($CARGO_TARGET_DIR/bench-reload).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
COMMAND="bench/reload_cost.sh $*"
RELOADS=${RELOADS:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench-reload}
PY=python3
declare -a NAMES=()
declare -A BINS=() PIDS=()
for a in "$@"; do
  n=${a%%=*}
  b=${a#*=}
  [ -x "$b" ] || { echo "reload_cost: no executable $b" >&2; exit 2; }
  NAMES+=("$n")
  BINS[$n]=$b
done
[ ${#NAMES[@]} -ge 1 ] || { echo "usage: bench/reload_cost.sh NAME=BINARY..." >&2; exit 2; }

die() { echo "reload_cost: $*" >&2; exit 1; }
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
reloads() { grep -c 'blocklist reloaded' "$1" || true; }
wait_http() {
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

rm -rf "${OUT:?}" && mkdir -p "$OUT"/{logs,stage}
S=$OUT/stage
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$S/base.yaml" 1
$PY "$ROOT/bench/tools.py" gen-ids 1000000 "$S/bench.yaml" 1 1
$PY - "$S" <<'PY'
import sys, uuid, random
d = sys.argv[1]
lines = open(d + "/base.yaml").read().splitlines(keepends=True)
rng = random.Random(7)
other = lambda: "  - %s\n" % uuid.UUID(int=rng.getrandbits(128), version=4)
first = next(i for i, l in enumerate(lines) if l.startswith("  - "))
edits = {
    "end": lines + [other()],
    "middle": lines[: len(lines) // 2] + [other()] + lines[len(lines) // 2 + 1 :],
    "start": lines[:first] + [other()] + lines[first + 1 :],
}
for name, body in edits.items():
    open("%s/%s.yaml" % (d, name), "w").write("".join(body))
PY

port=18955
for n in "${NAMES[@]}"; do
  mkdir -p "$OUT/lists/$n"
  cp "$S/base.yaml" "$OUT/lists/$n/blocklist.yaml"
  cat > "$OUT/$n.yaml" <<CFG
listen:
  public: 127.0.0.1:$port
  ops: 127.0.0.1:$((port + 1))
upstream:
  public: http://127.0.0.1:9
  admin: http://127.0.0.1:9
blocklist:
  path: $OUT/lists/$n/blocklist.yaml
CFG
  "${BINS[$n]}" --config "$OUT/$n.yaml" --log-format json > "$OUT/logs/$n.log" 2>&1 &
  PIDS[$n]=$!
  wait_http "http://127.0.0.1:$((port + 1))/healthz" 120 || die "$n did not start"
  port=$((port + 10))
done
sleep 2

: > "$OUT/results.tsv"
for kind in end middle start bench; do
  for ((k = 1; k <= RELOADS; k++)); do
    if ((k % 2)); then f=$kind.yaml; else f=base.yaml; fi
    for n in "${NAMES[@]}"; do
      log=$OUT/logs/$n.log
      before=$(reloads "$log")
      c0=$(ticks "${PIDS[$n]}")
      cp "$S/$f" "$S/next-$n.yaml"
      mv "$S/next-$n.yaml" "$OUT/lists/$n/blocklist.yaml"
      deadline=$(( $(date +%s) + 30 ))
      until [ "$(reloads "$log")" -gt "$before" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$n did not reload"
        sleep 0.02
      done
      # The SHA-256 and any compaction run after the log line, on the reload thread.
      sleep 0.3
      line=$(grep 'blocklist reloaded' "$log" | tail -1)
      ms=$(grep -o '"elapsed_ms":[0-9.]*' <<<"$line" | cut -d: -f2)
      inc=$(grep -o '"incremental":[a-z]*' <<<"$line" | cut -d: -f2 || true)
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$n" "$k" "$(( $(ticks "${PIDS[$n]}") - c0 ))" "$ms" "${inc:--}" >> "$OUT/results.tsv"
    done
  done
done

tk=$(getconf CLK_TCK)
med() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
{
  echo "Command: \`$COMMAND\` ($(date -u +%Y-%m-%dT%H:%MZ), RELOADS=$RELOADS, load average at end $(cut -d' ' -f1-3 /proc/loadavg)). Medians over the reloads of each kind (the edit and its undo)."
  echo
  echo "| edit | build | CPU ms per reload (median) | CPU ms (mean) | logged elapsed_ms (median) | read incrementally |"
  echo "|---|---|---:|---:|---:|---:|"
  for kind in end middle start bench; do
    for n in "${NAMES[@]}"; do
      sel() { awk -F'\t' -v k="$kind" -v n="$n" '$1==k && $2==n' "$OUT/results.tsv"; }
      cpu=$(sel | awk -F'\t' -v t="$tk" '{printf "%.0f\n", $4 * 1000 / t}' | med)
      mean=$(sel | awk -F'\t' -v t="$tk" '{s += $4} END {if (NR) printf "%.0f", s * 1000 / t / NR}')
      ms=$(sel | cut -f5 | med)
      inc=$(sel | awk -F'\t' '$6=="true"{i++} END {printf "%d of %d", i, NR}')
      echo "| $kind | $n | $cpu | $mean | $ms | $inc |"
    done
  done
} | tee "$OUT/reload_cost.md"
