#!/usr/bin/env bash
# One-command benchmark: builds the release relay, makes sure RabbitMQ is up,
# and runs benches/load/ (broker ceiling, both durability modes, both queue
# types, concurrency and payload sweeps, scale-out). Pass --quick for a short
# run, --only QUEUE-MODE (e.g. --only quorum-spool) for the ceiling and one
# relay configuration while iterating on a change, or --scale-out for the
# scale-out table alone (one or two relays behind a round-robin balancer,
# against one node and against a 3-node cluster). --visits N and
# --concurrency N change the main table's run length and connections;
# --steps prints only the in-process table of the relay's pure steps (time
# and allocations per visit), without a broker; --tracing prints only the
# cost of span export (off, on with a collector, on with the collector
# down), each twice in alternation; --compare LABEL=BINARY[,NAME=VALUE...]
# ... [--rounds N] runs only those relay builds (or settings) side by side,
# each round the ceiling first, then every configuration; --clients runs
# only the ceiling publisher with lapin and with amqprs, in alternation.
# Full and --scale-out runs start the 3-node cluster of scripts/cluster.sh
# and remove it afterwards (unless it was already running).
# The table is printed and also written to target/bench/last-run.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

case " $* " in
  *" --scale-out "*) needs_cluster=true ;;
  *" --quick "* | *" --only "* | *" --tracing "* | *" --steps "* | *" --compare "* | *" --clients "*) needs_cluster=false ;;
  *) needs_cluster=true ;;
esac

ensure_rabbitmq
# Read whole: `grep -q` leaving a pipe early would fail the status command
# under pipefail, and the cluster would never start.
if $needs_cluster && grep -q ' down$' <<<"$(scripts/cluster.sh status)"; then
  log "starting the 3-node cluster (scripts/cluster.sh up)"
  scripts/cluster.sh up
  trap 'scripts/cluster.sh down' EXIT
fi
log "building the release relay"
cargo build --release --locked --bin kobra-relay
mkdir -p target/bench
log "running the benchmark"
cargo bench --locked --bench load -- "$@" | tee target/bench/last-run.md
