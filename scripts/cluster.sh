#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on loopback for the cluster tests and the
# scale-out benchmark, beside (never instead of) the shared node on 5672.
#
#   scripts/cluster.sh up            start three nodes, join them, wait until they answer
#   scripts/cluster.sh down          stop every node and remove the data
#   scripts/cluster.sh status        one line per node: name, AMQP port, pid or "down"
#   scripts/cluster.sh kill N        SIGKILL node N (1..3), as a crash would
#   scripts/cluster.sh start N       start node N again; it rejoins the cluster
#   scripts/cluster.sh wait N        wait until node N runs and is part of the cluster
#   scripts/cluster.sh ctl N ARGS..  rabbitmqctl against node N
#
# Each node has its own node name (kobra-cluster-N@localhost), AMQP port
# (KOBRA_CLUSTER_BASE_PORT+N, default 5790+N), distribution port (20000
# above it), config, log and data directories under KOBRA_CLUSTER_DIR
# (default target/rabbitmq-cluster) and an Erlang cookie of its own, so
# nothing here can reach or disturb the shared node.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

CLUSTER_DIR=${KOBRA_CLUSTER_DIR:-$PWD/target/rabbitmq-cluster}
BASE_PORT=${KOBRA_CLUSTER_BASE_PORT:-5790}
NODES=(1 2 3)
# Where the Debian package keeps the real scripts (/usr/sbin holds wrappers
# that switch to the rabbitmq user and the shared node's settings).
RABBIT_BIN=${RABBITMQ_BIN_DIR:-/usr/lib/rabbitmq/bin}

node_name() { echo "kobra-cluster-$1@localhost"; }
amqp_port() { echo $((BASE_PORT + $1)); }
dist_port() { echo $((BASE_PORT + 20000 + $1)); }
node_dir() { echo "$CLUSTER_DIR/node$1"; }
pid_file() { echo "$(node_dir "$1")/rabbit.pid"; }

# Runs a command with node N's environment.
with_node() {
  local n=$1 dir
  shift
  dir=$(node_dir "$n")
  (
    export HOME="$CLUSTER_DIR/home" \
      RABBITMQ_CONF_ENV_FILE="$CLUSTER_DIR/rabbitmq-env.conf" \
      RABBITMQ_NODENAME="$(node_name "$n")" \
      RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
      RABBITMQ_DIST_PORT="$(dist_port "$n")" \
      RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$CLUSTER_DIR/enabled_plugins" \
      RABBITMQ_MNESIA_BASE="$dir/mnesia" \
      RABBITMQ_LOG_BASE="$dir/log" \
      RABBITMQ_PID_FILE="$(pid_file "$n")" \
      ERL_EPMD_ADDRESS=127.0.0.1
    exec "$@"
  )
}

ctl() {
  local n=$1
  shift
  with_node "$n" "$RABBIT_BIN/rabbitmqctl" -n "$(node_name "$n")" "$@"
}

prepare() {
  if [ ! -x "$RABBIT_BIN/rabbitmq-server" ]; then
    # Installs the package when missing (the shared node's helper does it).
    ensure_rabbitmq
  fi
  mkdir -p "$CLUSTER_DIR/home"
  if [ ! -f "$CLUSTER_DIR/home/.erlang.cookie" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_DIR/home/.erlang.cookie")
  fi
  chmod 400 "$CLUSTER_DIR/home/.erlang.cookie"
  echo 'ERL_EPMD_ADDRESS=127.0.0.1' >"$CLUSTER_DIR/rabbitmq-env.conf"
  echo '[].' >"$CLUSTER_DIR/enabled_plugins"
  for n in "${NODES[@]}"; do
    local dir
    dir=$(node_dir "$n")
    mkdir -p "$dir/mnesia" "$dir/log"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$(amqp_port "$n")
distribution.listener.interface = 127.0.0.1
loopback_users = none
# Test traffic is small: do not block publishers on a shared, busy disk.
disk_free_limit.absolute = 50MB
cluster_partition_handling = pause_minority
CONF
  done
}

node_pid() {
  local file
  file=$(pid_file "$1")
  [ -s "$file" ] || return 1
  local pid
  pid=$(cat "$file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

start_node() {
  local n=$1
  if node_pid "$n" >/dev/null; then
    return
  fi
  with_node "$n" "$RABBIT_BIN/rabbitmq-server" -detached
}

# Waits (bounded) until node N's broker application runs.
await_node() {
  local n=$1
  for _ in $(seq 1 90); do
    if ctl "$n" -q await_startup --timeout 5 >/dev/null 2>&1; then
      return 0
    fi
    sleep 1
  done
  log "node $(node_name "$n") did not start within 90 s; its log: $(node_dir "$n")/log"
  return 1
}

# Waits (bounded) until node N runs and every node of the cluster is running.
await_clustered() {
  local n=$1
  await_node "$n"
  for _ in $(seq 1 60); do
    if [ "$(running_members "$n")" -ge "${#NODES[@]}" ]; then
      return 0
    fi
    sleep 1
  done
  log "node $(node_name "$n") did not see all ${#NODES[@]} nodes running within 60 s"
  return 1
}

# How many running cluster members node N sees (0 when it does not answer).
running_members() {
  ctl "$1" -q cluster_status --formatter json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("running_nodes", [])))' 2>/dev/null ||
    echo 0
}

# Whether every node runs and node 1 sees them all (one CLI call).
all_running() {
  for n in "${NODES[@]}"; do
    node_pid "$n" >/dev/null || return 1
  done
  [ "$(running_members 1)" -ge "${#NODES[@]}" ]
}

up() {
  if all_running; then
    log "cluster already up"
    return
  fi
  prepare
  for n in "${NODES[@]}"; do
    start_node "$n"
  done
  for n in "${NODES[@]}"; do
    await_node "$n"
  done
  local first
  first=$(node_name 1)
  for n in "${NODES[@]:1}"; do
    if ! ctl "$n" -q cluster_status --formatter json | grep -q "\"$first\""; then
      ctl "$n" -q stop_app
      ctl "$n" -q join_cluster "$first"
      ctl "$n" -q start_app
    fi
  done
  for n in "${NODES[@]}"; do
    await_clustered "$n"
  done
  log "cluster up: $(for n in "${NODES[@]}"; do printf '%s:%s ' "$(node_name "$n")" "$(amqp_port "$n")"; done)"
}

down() {
  for n in "${NODES[@]}"; do
    local pid
    if pid=$(node_pid "$n"); then
      ctl "$n" -q stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
      for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$CLUSTER_DIR"
  log "cluster down, $CLUSTER_DIR removed"
}

status() {
  for n in "${NODES[@]}"; do
    local pid
    pid=$(node_pid "$n" || echo down)
    echo "$n $(node_name "$n") $(amqp_port "$n") $pid"
  done
}

node_arg() {
  case "${1:-}" in
    1 | 2 | 3) ;;
    *)
      echo "usage: scripts/cluster.sh $2 1|2|3" >&2
      exit 2
      ;;
  esac
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  kill)
    node_arg "${2:-}" kill
    pid=$(node_pid "$2") || { log "node $2 is not running"; exit 1; }
    kill -9 "$pid"
    # Gone once the kernel reaped it (bounded), so a start right after works.
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.1
    done
    log "node $2 (pid $pid) still exists after SIGKILL"
    exit 1
    ;;
  start)
    node_arg "${2:-}" start
    start_node "$2"
    ;;
  wait)
    node_arg "${2:-}" wait
    await_clustered "$2"
    ;;
  ctl)
    node_arg "${2:-}" ctl
    n=$2
    shift 2
    ctl "$n" "$@"
    ;;
  *)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
