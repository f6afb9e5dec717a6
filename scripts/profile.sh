#!/usr/bin/env bash
# Where the relay's CPU goes under load: records every CPU with perf while
# the benchmark runs one configuration (default quorum-spool), then sorts
# the samples of the relay process of the unpaced run into categories
# (normalization, allocator, HTTP, AMQP, kernel network, spool disk, ...)
# and converts each share into µs per visit.
#   scripts/profile.sh [QUEUE-MODE]
# perf comes from Debian's linux-perf and is installed when missing. The
# virtual machines here have no hardware counters, so the clock is sampled.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

only="${1:-quorum-spool}"
ensure_commands perf=linux-perf
ensure_rabbitmq
log "building the release relay"
cargo build --release --locked --bin kobra-relay
bench=$(bench_executable)
out=target/bench/profile
mkdir -p "$out"
log "recording all CPUs while the benchmark runs --only $only"
as_root perf record -q -e cpu-clock -F 2000 -a -g -o "$out/perf.data" -- \
  "$bench" --only "$only" >"$out/bench.md" 2>"$out/bench.log"
pid=$(sed -n 's/^relay pid \([0-9]*\): .*unpaced$/\1/p' "$out/bench.log" | head -1)
[ -n "$pid" ] || { log "no unpaced relay run in $out/bench.log"; exit 1; }
grep -E '^\| ' "$out/bench.md" | grep -v '^| step' || true
echo
as_root perf script -i "$out/perf.data" -F pid,tid,ip,sym 2>/dev/null |
  python3 scripts/lib/profile_categories.py "$pid" "$out/bench.md" | tee "$out/categories.md"
