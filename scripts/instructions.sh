#!/usr/bin/env bash
# User-space instructions per visit of one or more relay builds, counted by
# valgrind's callgrind: the same count for the same build whatever else the
# machine is doing, so a change of a few percent shows where the CPU clock
# of a shared 2-core machine cannot tell it from noise.
#   scripts/instructions.sh [LABEL=BINARY ...]   (default: this checkout's release build)
# Each build runs twice under callgrind, with 1,000 and with 3,000 visits
# (quorum queues, spool mode, 64 connections); the difference ÷ 2,000 is
# what one visit costs, start-up and shutdown cancelling out. Kernel time
# is not counted, and SHA-256 counts as its portable code (valgrind does
# not run the CPU's SHA instructions), about 88,000 instructions per
# example body that the real CPU does in under 2 µs.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

ensure_commands valgrind=valgrind
ensure_rabbitmq
builds=("$@")
if [ ${#builds[@]} -eq 0 ]; then
  log "building the release relay"
  cargo build --release --locked --bin kobra-relay
  builds=("this=$PWD/target/release/kobra-relay")
fi
bench=$(bench_executable)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "| relay | instructions per visit |"
echo "|---|---:|"
for spec in "${builds[@]}"; do
  label=${spec%%=*}
  binary=${spec#*=}
  [ -x "$binary" ] || { log "$binary is not an executable"; exit 2; }
  wrapper="$out/$label.sh"
  printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/%s.$$.out %s "$@"\n' \
    "$out" "$label" "$binary" >"$wrapper"
  chmod +x "$wrapper"
  totals=()
  for visits in 1000 3000; do
    rm -f "$out/$label".*.out
    "$bench" --compare "$label=$wrapper" --rounds 1 --visits "$visits" --concurrency 64 \
      >/dev/null 2>"$out/$label.log" || { cat "$out/$label.log" >&2; exit 1; }
    totals+=("$(sed -n 's/^summary: //p' "$out/$label".*.out)")
  done
  echo "| $label | $(((totals[1] - totals[0]) / 2000)) |"
done
