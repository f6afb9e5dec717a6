# Shared by the scripts: make sure the local RabbitMQ answers on
# 127.0.0.1:5672, starting it when it is installed but down and installing
# it with apt when it is missing; install other missing tools with apt;
# find the benchmark's executable.

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_commands COMMAND=PACKAGE ...: installs with apt the Debian package
# of every command that is not on PATH, in one apt run.
ensure_commands() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  log "installing with apt: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# bench_executable: builds the load benchmark (benches/load) and prints the
# path of its executable, for the scripts that run it under a profiler.
bench_executable() {
  cargo bench --locked --no-run --bench load >&2
  cargo bench --locked --no-run --bench load --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "load" and m.get("executable"):
        print(m["executable"])'
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
