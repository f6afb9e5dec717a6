#!/usr/bin/env bash
# The whole test suite, as CI runs it: makes sure RabbitMQ answers on
# 127.0.0.1:5672 (starting it when installed but down, installing it with apt
# when missing), starts a 3-node RabbitMQ cluster of its own on loopback for
# the cluster tests (scripts/cluster.sh; removed again on exit), then checks
# formatting and lints, runs every test, and last runs the shipped stack
# (scripts/stack-check.sh: image built and run, Prometheus, alerts). Fuzzing
# is its own command (scripts/fuzz.sh): it needs a second, instrumented build.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

ensure_test_tools() {
  # The observability tests run promtool and a real Prometheus on loopback;
  # the deploy tests check deploy/docker-compose.yml with `docker-compose
  # config` (needs no engine) and deploy/kubernetes with kubernetes-validate.
  ensure_commands promtool=prometheus prometheus=prometheus docker-compose=docker-compose
  if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
    log "installing kubernetes-validate 1.37.0 from PyPI (Kubernetes API schemas, offline)"
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
  fi
}

check_supply_chain() {
  if ! command -v cargo-deny >/dev/null 2>&1; then
    log "installing cargo-deny 0.20.2 (once per machine, a few minutes)"
    cargo install --locked --quiet cargo-deny --version 0.20.2
  fi
  cargo deny --locked check licenses bans sources
  if cargo deny fetch db >/dev/null 2>&1; then
    cargo deny --locked check advisories
  else
    log "the RustSec advisory database cannot be fetched from here: skipping the advisories check (it runs wherever the database is reachable)"
  fi
}

validate_asyncapi() {
  if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: skipping the AsyncAPI validation of docs/asyncapi.yaml"
    return
  fi
  local dir=target/asyncapi-check
  mkdir -p "$dir"
  cp scripts/asyncapi/package.json scripts/asyncapi/validate.mjs "$dir/"
  if [ ! -d "$dir/node_modules/@asyncapi/parser" ]; then
    (cd "$dir" && npm install --silent --no-audit --no-fund >/dev/null 2>&1) || {
      log "could not install @asyncapi/parser from npm: skipping the AsyncAPI validation"
      return
    }
  fi
  node "$dir/validate.mjs" docs/asyncapi.yaml
}

ensure_rabbitmq

# The cluster boots (about 25 s) while the checks below run.
mkdir -p target
log "starting the 3-node test cluster in the background (scripts/cluster.sh up)"
scripts/cluster.sh up >target/cluster-up.log 2>&1 &
cluster_boot=$!
stop_cluster() {
  kill "$cluster_boot" 2>/dev/null && wait "$cluster_boot" 2>/dev/null
  scripts/cluster.sh down
}
trap stop_cluster EXIT

ensure_test_tools

log "AsyncAPI document"
validate_asyncapi
log "supply chain (cargo deny)"
check_supply_chain
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "waiting for the test cluster"
if ! wait "$cluster_boot"; then
  cat target/cluster-up.log >&2
  log "the 3-node test cluster did not start (log above)"
  exit 1
fi
log "cargo test"
cargo test --locked
stop_cluster
trap - EXIT
# After the tests, not beside them: the image build takes both cores.
log "the shipped stack (scripts/stack-check.sh)"
as_root scripts/stack-check.sh
