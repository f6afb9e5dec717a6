#!/usr/bin/env bash
# One-command benchmark: builds the release relay, makes sure RabbitMQ is up,
# and runs benches/load.rs (broker ceiling, both durability modes, both queue
# types, concurrency and payload sweeps). Pass --quick for a short run, or
# --only QUEUE-MODE (e.g. --only quorum-spool) for the ceiling and one relay
# configuration while iterating on a change.
# The table is printed and also written to target/bench/last-run.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

ensure_rabbitmq
log "building the release relay"
cargo build --release --locked --bin kobra-relay
mkdir -p target/bench
log "running the benchmark"
cargo bench --locked --bench load -- "$@" | tee target/bench/last-run.md
