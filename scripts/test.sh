#!/usr/bin/env bash
# The whole test suite, as CI runs it: makes sure RabbitMQ answers on
# 127.0.0.1:5672 (starting it when installed but down, installing it with apt
# when missing), then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

amqp_port_open() {
  (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

ensure_rabbitmq() {
  if amqp_port_open && rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1; then
    log "RabbitMQ is up"
    return
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "RabbitMQ is not installed; installing it with apt"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  if ! amqp_port_open; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached
  fi
  log "waiting for RabbitMQ to answer"
  # The node takes a few seconds to boot; await_startup fails fast until the
  # Erlang VM is reachable, so retry it (bounded).
  for _ in $(seq 1 60); do
    if as_root rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && amqp_port_open; then
      log "RabbitMQ is up"
      return
    fi
    sleep 1
  done
  log "RabbitMQ did not answer on 127.0.0.1:5672 within two minutes"
  exit 1
}

ensure_prometheus() {
  # The observability tests run promtool and a real Prometheus on loopback.
  if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    return
  fi
  log "installing Debian's prometheus package (promtool and the server)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
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
ensure_prometheus

log "AsyncAPI document"
validate_asyncapi
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "cargo test"
cargo test --locked
