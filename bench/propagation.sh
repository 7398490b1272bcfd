#!/usr/bin/env bash
# Propagation of a remote blocklist (blocklist.url) to three gateway replicas: 20 edits each
# for 10 and 1,000,000 ids, from an S3-compatible object (moto in server mode) and from a file
# served by nginx (ETags), measured from the moment the edit is published until whoami of the
# newly listed identity answers 401 at all three replicas (bench/propagation.py). Writes the
# figures into BENCHMARKS.md (between the propagation markers) and prints them.
#
# Usage: bench/propagation.sh [--no-install] [--no-build]
# Environment: EDITS (20), SIZES (10,1000000), SOURCES (s3,http), REPLICAS (3), POLL
#   (blocklist.poll_interval values, comma-separated, e.g. 1s,250ms; default the gateway's 1s),
#   CARGO_TARGET_DIR (target), BENCH_OUT ($CARGO_TARGET_DIR/bench).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENVS=""
for v in EDITS SIZES SOURCES REPLICAS POLL; do
  if [ -n "${!v:-}" ]; then ENVS+="$v=${!v} "; fi
done
COMMAND="${ENVS}bench/propagation.sh $*"
INSTALL=1
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$CARGO_TARGET_DIR/bench}
EDITS=${EDITS:-20}
SIZES=${SIZES:-10,1000000}
SOURCES=${SOURCES:-s3,http}
REPLICAS=${REPLICAS:-3}
POLL=${POLL:-}

if [ "$INSTALL" = 1 ]; then
  command -v nginx >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  }
  command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]'
fi
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release --locked --bin kratos-gate)
fi
GATEWAY="$CARGO_TARGET_DIR/release/kratos-gate"
[ -x "$GATEWAY" ] || { echo "no $GATEWAY (build it, or drop --no-build)" >&2; exit 1; }

mkdir -p "$OUT"
python3 "$ROOT/bench/propagation.py" --gateway "$GATEWAY" --out "$OUT" \
  --edits "$EDITS" --sizes "$SIZES" --sources "$SOURCES" --replicas "$REPLICAS" --poll "$POLL"

COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 "$ROOT/bench/propagation.py" report "$OUT/propagation.json" "$ROOT/BENCHMARKS.md" \
  "$COMMAND" "$COMMIT"
