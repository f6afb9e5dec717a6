#!/usr/bin/env bash
# The shipped stack, run for real on one machine without a container engine:
#
#   1. image      deploy/docker/Dockerfile built with buildah, FROM images
#                 stood in for by local Debian rootfs (registries are out of
#                 reach here; see the Dockerfile's header)
#   2. run        the image's ENTRYPOINT/CMD run from its own rootfs as the
#                 image's user with the image's ENV: fixture in, both messages
#                 out, HEALTHCHECK passing, SIGTERM draining cleanly
#   3. panels     Prometheus on deploy/prometheus/prometheus.yml (only the
#                 target rewritten) scraping that relay; every panel query of
#                 grafana/dashboards/*.json must return a series
#   4. alerts     broker cut off (a TCP gate this script owns): the
#                 broker-down and backlog alerts go pending, firing, resolved
#   5. compose    deploy/docker-compose.yml checked against the image, the
#                 Prometheus config and the Grafana provisioning
#
# One line per piece, "ok <piece>: <what> (<figures>)"; the first failure
# stops the script and says which piece broke. Everything started is
# removed on exit: processes by pid, mounts, buildah containers, the
# RabbitMQ vhost the relay used. Needs root (chroot, mounts, buildah).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

IMAGE=localhost/kobra-relay:stack-check
DOCKERFILE=deploy/docker/Dockerfile
CACHE=target/stack-check
FIXTURE=tests/fixtures/finish-visit-example.json
# Bump when the way a stand-in is made changes; the toolchain version is
# part of the build stand-in's key on its own.
STANDIN_RECIPE=1

pass() { printf 'ok %s\n' "$*"; }
fail() {
  printf 'FAILED %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------- tools ----

ensure_tools() {
  ensure_commands buildah=buildah fuse-overlayfs=fuse-overlayfs newuidmap=uidmap mmdebstrap=mmdebstrap \
    prometheus=prometheus docker-compose=docker-compose curl=curl jq=jq
  # The helpers in scripts/stack/ read YAML; python3 may not be Debian's.
  if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    log "installing PyYAML for $(command -v python3)"
    python3 -m pip install --quiet --disable-pip-version-check pyyaml
  fi
}

# ------------------------------------------------------------- cleanup -----

CLEANUP=()
on_exit() {
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
    eval "${CLEANUP[$i]}" >/dev/null 2>&1 || true
  done
}
trap on_exit EXIT
later() { CLEANUP+=("$*"); }

stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Polls CMD (a shell string) until it succeeds or SECONDS pass.
wait_until() {
  local seconds=$1 what=$2 cmd=$3 deadline=$((SECONDS + $1))
  until eval "$cmd" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what: not within ${seconds}s"
    sleep 0.2
  done
}

# ----------------------------------------------------------- stand-ins -----

DEBIAN_MIRROR=http://deb.debian.org/debian

standin_key() { # image name → the label value the current recipe gives it
  case $1 in
    *rust:*) echo "recipe-$STANDIN_RECIPE-$(rustc --version | cut -d' ' -f2)" ;;
    *) echo "recipe-$STANDIN_RECIPE" ;;
  esac
}

standin_current() { # name: is a stand-in made by this recipe already stored?
  [ "$(buildah inspect --type image "$1" 2>/dev/null | jq -r '.ImageAnnotations["org.kobra-relay.stand-in"] // empty')" = "$(standin_key "$1")" ]
}

# distroless/cc-debian12:nonroot: glibc, libgcc, CA roots, the nonroot user
# (65532) and nothing else; no shell, no package manager.
make_runtime_rootfs() {
  local dir=$1
  mmdebstrap --quiet --variant=extract --include=libc6,libgcc-s1,ca-certificates \
    --format=directory bookworm "$dir" "$DEBIAN_MIRROR"
  # ca-certificates' own hook (update-ca-certificates) needs a shell, which
  # the extract variant does not run: build the bundle as it would.
  cat "$dir"/usr/share/ca-certificates/mozilla/*.crt >"$dir/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$dir"/usr/share/{doc,man,info,locale,lintian} "$dir"/usr/lib/x86_64-linux-gnu/gconv \
    "$dir"/usr/bin/openssl "$dir"/var/cache/* "$dir"/var/lib/apt/lists/* "$dir"/var/log/*
  cat >"$dir/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$dir/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  mkdir -p "$dir/home/nonroot" "$dir/tmp"
  chown 65532:65532 "$dir/home/nonroot"
  chmod 1777 "$dir/tmp"
}

# rust:<version>-slim-bookworm: a C toolchain for linking and this machine's
# Rust toolchain at the pinned version under /usr/local/cargo, as the
# official image lays it out.
make_build_rootfs() {
  local dir=$1 version toolchain
  version=$(rustc --version | cut -d' ' -f2)
  toolchain="$(rustup toolchain list -v | awk -v v="$version" '$1 ~ "^"v"-" {print $NF; exit}')"
  [ -x "$toolchain/bin/cargo" ] || fail "image: no Rust $version toolchain to copy into the build stand-in (rustup toolchain install $version)"
  mmdebstrap --quiet --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    --format=directory bookworm "$dir" "$DEBIAN_MIRROR"
  mkdir -p "$dir/usr/local/cargo"
  cp -a "$toolchain"/{bin,lib,libexec} "$dir/usr/local/cargo/"
  # Crates come from crates.io through this machine's network, which may
  # re-sign TLS with a local CA: the stand-in trusts what the host trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$dir"/usr/share/{doc,man,info,locale} "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/*
}

commit_standin() { # name rootfs-dir [buildah config args…]
  local name=$1 dir=$2 ctr
  shift 2
  ctr=$(buildah from scratch)
  later "buildah rm $ctr"
  buildah copy --quiet "$ctr" "$dir/" / >/dev/null
  buildah config --annotation "org.kobra-relay.stand-in=$(standin_key "$name")" "$@" "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null
}

ensure_standins() {
  local runtime build from started=$SECONDS
  build=$(awk '/^FROM .* AS build/ {print $2}' "$DOCKERFILE")
  runtime=$(awk '/^FROM / {from=$2} END {print from}' "$DOCKERFILE")
  case $build in */*) ;; *) build=docker.io/library/$build ;; esac
  for from in "$build" "$runtime"; do
    standin_current "$from" && continue
    local dir
    dir=$(mktemp -d "$PWD/$CACHE/rootfs.XXXXXX")
    later "rm -rf '$dir'"
    log "making the stand-in for $from"
    if [ "$from" = "$runtime" ]; then
      make_runtime_rootfs "$dir"
      commit_standin "$from" "$dir" --user 65532:65532 --workingdir /home/nonroot \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    else
      make_build_rootfs "$dir"
      commit_standin "$from" "$dir" --env CARGO_HOME=/usr/local/cargo --env RUSTUP_HOME=/usr/local/rustup \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    fi
    rm -rf "$dir"
  done
  STANDIN_SECONDS=$((SECONDS - started))
}

# --------------------------------------------------------------- image -----

build_image() {
  local started=$SECONDS previous
  previous=$(buildah images --noheading --format '{{.ID}}' "$IMAGE" 2>/dev/null || true)
  log "buildah bud $DOCKERFILE → $IMAGE (log: $CACHE/build.log)"
  # Docker format keeps HEALTHCHECK (OCI image configs have no such field).
  if ! buildah bud --isolation chroot --pull=never --layers --format docker --network host \
    -f "$DOCKERFILE" -t "$IMAGE" . >"$CACHE/build.log" 2>&1; then
    tail -n 30 "$CACHE/build.log" >&2
    fail "image: buildah bud failed (log above, all of it in $CACHE/build.log)"
  fi
  BUILD_SECONDS=$((SECONDS - started))
  # The image this build replaced is untagged now; keep the store from growing.
  if [ -n "$previous" ] && [ "$previous" != "$(buildah images --noheading --format '{{.ID}}' "$IMAGE")" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true
  fi
}

# The image config as Docker stores it: .Env, .Entrypoint, .Cmd, .User,
# .WorkingDir, .Healthcheck, .Volumes, .ExposedPorts.
image_config() { buildah inspect --type image "$IMAGE" | jq -c .Docker.config; }

mount_image() {
  ROOTFS_CTR=$(buildah from --pull=never "$IMAGE")
  later "buildah rm $ROOTFS_CTR"
  ROOTFS=$(buildah mount "$ROOTFS_CTR")
  later "buildah umount $ROOTFS_CTR"
}

check_image() {
  local size bytes_limit=$((40 * 1000 * 1000)) missing
  size=$(du -sb --apparent-size "$ROOTFS" | cut -f1)
  [ "$size" -le "$bytes_limit" ] || fail "image: runtime image is $((size / 1000000)) MB, over the 40 MB budget"
  # distroless has no ldd; the dynamic loader lists what the binary needs.
  missing=$(chroot "$ROOTFS" /lib64/ld-linux-x86-64.so.2 --list /usr/local/bin/kobra-relay 2>&1 | grep -i 'not found' || true)
  [ -z "$missing" ] || fail "image: the binary needs libraries the image lacks: $missing"
  pass "image: built $DOCKERFILE with buildah (${BUILD_SECONDS}s; stand-ins ${STANDIN_SECONDS}s), runtime image $(awk -v b="$size" 'BEGIN {printf "%.1f", b / 1e6}') MB, every library the binary links is in it"
}

# ----------------------------------------------------------- the relay -----

RUN=""           # this run's scratch directory
RELAY_PID=""     # the relay process itself (what `docker stop` signals)
BUILDAH_PID=""   # buildah run, its parent
GATE_PID=""
ACCEPTED=0       # visits answered 202
REJECTED=0       # authenticated bodies answered 400 (kept on the rejected exchange)

# The relay reaches RabbitMQ through this gate; killing it is the outage.
open_gate() {
  python3 scripts/stack/tcp_gate.py "$GATE_PORT" 5672 &
  GATE_PID=$!
  later "stop_pid $GATE_PID"
  wait_until 10 "gate: listening on $GATE_PORT" "(exec 3<>/dev/tcp/127.0.0.1/$GATE_PORT)"
}
close_gate() { stop_pid "$GATE_PID"; }

in_image() { # run one command of the image's binary in its rootfs, as the image's user
  timeout 60 buildah run --isolation chroot "${RELAY_ENV[@]/#/--env=}" "$ROOTFS_CTR" -- "$@"
}

relay_metric() { # name → its value on the admin listener ("" when absent)
  curl -fsS "http://$ADMIN/metrics" | awk -v m="$1" '$1 == m {print $2; exit}'
}

post() { # body-file key → HTTP status
  curl -sS -o /dev/null -w '%{http_code}' -H "api-key: $2" -H 'content-type: application/json' \
    --data-binary "@$1" "http://$INGRESS/webhooks/finish-visit"
}

post_expect() { # status body-file key
  local got
  got=$(post "$2" "$3")
  [ "$got" = "$1" ] || fail "$PIECE: POST $(basename "$2") answered $got, expected $1"
  case $1 in 202) ACCEPTED=$((ACCEPTED + 1)) ;; 400) REJECTED=$((REJECTED + 1)) ;; esac
}

start_relay() {
  local config entry cmd port
  PIECE=run
  config=$(image_config)
  RUN=$(mktemp -d "$PWD/$CACHE/run.XXXXXX")
  later "rm -rf '$RUN'"
  # The image's own ports, on loopback: its HEALTHCHECK probes 127.0.0.1:8081.
  for port in $(jq -r '.ExposedPorts | keys[] | split("/")[0]' <<<"$config"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      fail "run: port $port (the image's EXPOSE) is taken on this machine; free it and run again"
    fi
  done
  INGRESS=127.0.0.1:$(jq -r '.Env[] | select(startswith("KOBRA_RELAY_LISTEN=")) | split(":")[-1]' <<<"$config")
  ADMIN=127.0.0.1:$(jq -r '.Env[] | select(startswith("KOBRA_RELAY_ADMIN_LISTEN=")) | split(":")[-1]' <<<"$config")
  GATE_PORT=$(free_port)
  KEY=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
  PREFIX=stackcheck$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  VHOST=$PREFIX
  rabbitmqctl -q add_vhost "$VHOST" >/dev/null
  later "rabbitmqctl -q delete_vhost '$VHOST'"
  rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
  open_gate

  # The volume: a host directory owned by the image's user, mounted over
  # the image's VOLUME path as `docker run -v` would.
  mkdir "$RUN/spool"
  chown 65532:65532 "$RUN/spool"
  RELAY_ENV=(
    "KOBRA_RELAY_LISTEN=$INGRESS"
    "KOBRA_RELAY_ADMIN_LISTEN=$ADMIN"
    "KOBRA_RELAY_API_KEYS=stack-check:$KEY"
    "KOBRA_RELAY_AMQP_URL=amqp://guest:guest@127.0.0.1:$GATE_PORT/$VHOST"
    "KOBRA_RELAY_TOPOLOGY_PREFIX=$PREFIX"
  )
  mapfile -t entry < <(jq -r '.Entrypoint[]' <<<"$config")
  mapfile -t cmd < <(jq -r '.Cmd[]' <<<"$config")
  buildah run --isolation chroot "${RELAY_ENV[@]/#/--env=}" \
    -v "$RUN/spool:$(jq -r '.Volumes | keys[0]' <<<"$config")" \
    "$ROOTFS_CTR" -- "${entry[@]}" "${cmd[@]}" >"$RUN/relay.log" 2>&1 &
  BUILDAH_PID=$!
  later "stop_pid $BUILDAH_PID"
  wait_until 30 "run: the relay answering /readyz on $ADMIN (log: $RUN/relay.log)" \
    "curl -fsS http://$ADMIN/readyz"
  RELAY_PID=$(ss -Hltnp "sport = :${ADMIN##*:}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  [ -n "$RELAY_PID" ] || fail "run: cannot find the relay's pid"
  later "stop_pid $RELAY_PID"
  local uid
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$RELAY_PID/status")
  [ "$uid" = 65532 ] || fail "run: the relay runs as uid $uid, not the image's nonroot (65532)"
  wait_until 30 "run: the relay connected to RabbitMQ" '[ "$(relay_metric kobra_relay_broker_connected)" = 1 ]'
}

# Reads one visit off a product queue with the image's own `tail`.
take_from_queue() { # product [--raw]
  in_image /usr/local/bin/kobra-relay tail "$@" --from-queue --json -n 1 2>"$RUN/tail.log"
}

check_run() {
  local started=$SECONDS raw normalized
  post_expect 202 "$FIXTURE" "$KEY"
  raw=$(take_from_queue debt_collection --raw) || fail "run: no raw message on $PREFIX.visits.raw.debt_collection ($(cat "$RUN/tail.log"))"
  ACCEPTED=$((ACCEPTED - 1)) # taken off its queues, out of the final count
  [ "$(jq -cS . <<<"$raw")" = "$(jq -cS . "$FIXTURE")" ] || fail "run: the raw message is not the posted fixture"
  normalized=$(take_from_queue debt_collection) || fail "run: no normalized message on $PREFIX.visits.debt_collection"
  jq -e --argjson raw "$raw" '.schemaVersion == 1 and .product.slug == "debt_collection" and .visitId == $raw.visitID' \
    <<<"$normalized" >/dev/null || fail "run: the normalized message does not describe the fixture: $normalized"
  in_image "${HEALTH[@]}" >/dev/null 2>&1 || fail "run: the image's HEALTHCHECK (${HEALTH[*]}) fails"
  pass "run: image ENTRYPOINT/CMD as uid 65532 with the image's ENV; fixture → 202 → raw (same JSON) and normalized on the debt_collection queues; HEALTHCHECK passes ($((SECONDS - started))s)"
}

# ------------------------------------------------------------ traffic ------

write_bodies() {
  printf '{"visitID":"A1","productID":1,"agentID":1' >"$RUN/truncated.json"
  printf '{"visitID":"B2","productID":"7","lat":"x"}' >"$RUN/product7.json"
  printf '{"visitID":"C3"}' >"$RUN/noproduct.json"
  printf '[1,2,3]' >"$RUN/array.json"
}

traffic() {
  PIECE=panels
  write_bodies
  local i
  for i in 1 2 3; do post_expect 202 "$FIXTURE" "$KEY"; done
  post_expect 202 "$RUN/product7.json" "$KEY"
  post_expect 202 "$RUN/noproduct.json" "$KEY"
  post_expect 401 "$FIXTURE" wrong-key
  post_expect 401 "$FIXTURE" ""
  post_expect 400 "$RUN/truncated.json" "$KEY"
  post_expect 400 "$RUN/array.json" "$KEY"
}

# ---------------------------------------------------------- prometheus -----

start_prometheus() {
  PIECE=panels
  PROM_PORT=$(free_port)
  PROM=http://127.0.0.1:$PROM_PORT
  mkdir "$RUN/prometheus"
  python3 scripts/stack/prom.py config deploy/prometheus/prometheus.yml "$RUN/prometheus/prometheus.yml" "$ADMIN"
  python3 scripts/stack/prom.py rules deploy/prometheus/alerts.yml "$RUN/prometheus/alerts.yml" "$ALERT_HOLD"
  prometheus --config.file="$RUN/prometheus/prometheus.yml" --storage.tsdb.path="$RUN/prometheus/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$RUN/prometheus.log" 2>&1 &
  PROM_PID=$!
  later "stop_pid $PROM_PID"
  wait_until 30 "panels: Prometheus ready on $PROM_PORT (log: $RUN/prometheus.log)" "curl -fsS $PROM/-/ready"
  wait_until 40 "panels: Prometheus scraping the relay at $ADMIN" \
    "curl -fsS '$PROM/api/v1/targets' | jq -e '.data.activeTargets[0].health == \"up\"'"
}

prom_query() { # promql → the first sample's value ("" when no series)
  curl -fsS "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}

check_panels() {
  local started=$SECONDS count
  # rate() needs two samples of each series after the traffic.
  wait_until 60 "panels: two scrapes after the traffic" \
    "[ \"\$(prom_query 'count_over_time(kobra_relay_build_info[1m])')\" -ge 2 ]"
  count=$(python3 scripts/stack/prom.py panels "$PROM" 'grafana/dashboards/*.json' grafana/provisioning/datasources) ||
    fail "panels: dashboard queries without a series (above)"
  pass "panels: Prometheus on the shipped config (target → $ADMIN) evaluated all $count panel queries of grafana/dashboards/*.json, each with a series ($((SECONDS - started))s)"
}

# -------------------------------------------------------------- alerts -----

ALERT_HOLD=10s # the test copy's `for:` (the shipped rules hold 1m and 10m)
OUTAGE_ALERTS=(KobraRelayBrokerDisconnected KobraRelaySpoolBacklogGrowing)

check_alerts() {
  PIECE=alerts
  local pending firing resolved i
  close_gate
  wait_until 30 "alerts: the relay noticing the broker is gone" '[ "$(relay_metric kobra_relay_broker_connected)" = 0 ]'
  # Over the backlog threshold (100), then a trickle so the spool keeps growing.
  for i in $(seq 1 110); do post_expect 202 "$FIXTURE" "$KEY"; done
  # Stopped by a flag file, not a signal, so no answered request goes uncounted.
  (for _ in $(seq 1 600); do
    [ -e "$RUN/trickle.stop" ] && break
    post "$FIXTURE" "$KEY" >>"$RUN/trickle"
    echo >>"$RUN/trickle"
    sleep 0.5
  done) &
  local trickle=$!
  later "stop_pid $trickle"
  pending=$(python3 scripts/stack/prom.py alert "$PROM" pending 90 "${OUTAGE_ALERTS[@]}") ||
    fail "alerts: ${OUTAGE_ALERTS[*]} did not go pending"
  firing=$(python3 scripts/stack/prom.py alert "$PROM" firing 90 "${OUTAGE_ALERTS[@]}") ||
    fail "alerts: ${OUTAGE_ALERTS[*]} did not fire"
  in_image "${HEALTH[@]}" >/dev/null 2>&1 || fail "alerts: HEALTHCHECK fails while the broker is away (the spool should keep the relay ready)"
  touch "$RUN/trickle.stop"
  wait "$trickle"
  ACCEPTED=$((ACCEPTED + $(grep -c '^202$' "$RUN/trickle")))
  open_gate
  wait_until 90 "alerts: the relay reconnecting and draining its spool" \
    '[ "$(relay_metric kobra_relay_broker_connected)" = 1 ] && [ "$(relay_metric kobra_relay_spool_entries)" = 0 ]'
  resolved=$(python3 scripts/stack/prom.py alert "$PROM" inactive 90 "${OUTAGE_ALERTS[@]}") ||
    fail "alerts: ${OUTAGE_ALERTS[*]} did not resolve after the broker came back"
  pass "alerts: ${OUTAGE_ALERTS[*]} pending after ${pending}s, firing after ${firing}s more, resolved ${resolved}s after the spool drained (test copy of alerts.yml, every for: $ALERT_HOLD; shipped config intervals)"
}

# --------------------------------------------------------------- drain -----

check_drain() {
  PIECE=drain
  local started=$SECONDS status messages i
  for i in 1 2 3 4 5; do post_expect 202 "$FIXTURE" "$KEY"; done
  kill -TERM "$RELAY_PID"
  for _ in $(seq 1 300); do
    kill -0 "$BUILDAH_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$BUILDAH_PID" 2>/dev/null && fail "drain: the relay was still running 30 s after SIGTERM"
  wait "$BUILDAH_PID" && status=0 || status=$?
  [ "$status" = 0 ] || fail "drain: exit status $status after SIGTERM (log: $RUN/relay.log)"
  grep -q '"kobra-relay stopped"' "$RUN/relay.log" || fail "drain: no \"kobra-relay stopped\" line in the relay's log"
  grep '"kobra-relay stopped"' "$RUN/relay.log" | grep -Eq '"left_in_spool":0[,}]' || fail "drain: visits were left in the spool at exit"
  # Every accepted visit is on a queue twice (raw and normalized); every
  # rejected body once, on the rejected queue. (The archive stream keeps its
  # own copy; a stream's message count is approximate, so it is left out.)
  # Delivery is at least once: a publish whose confirm was lost when the
  # broker went away is published again, so a few more are allowed, never
  # fewer. Quorum queues report their depth every few seconds: poll (bounded).
  local expected=$((2 * ACCEPTED + REJECTED))
  for _ in $(seq 1 30); do
    messages=$(rabbitmqctl -q list_queues -p "$VHOST" type messages --no-table-headers |
      awk '$1 != "stream" {s += $2} END {print s + 0}')
    [ "$messages" -lt "$expected" ] || break
    sleep 0.5
  done
  [ "$messages" -ge "$expected" ] ||
    fail "drain: $messages messages on the queues, expected $expected (2 × $ACCEPTED accepted + $REJECTED rejected): visits were lost"
  pass "drain: SIGTERM → exit 0 in $((SECONDS - started))s, spool empty; $ACCEPTED accepted visits all on their queues ($messages messages, $((messages - expected)) published again after the outage)"
}

# ------------------------------------------------------------- compose -----

check_compose() {
  PIECE=compose
  local summary
  image_config >"$RUN/image.json"
  docker-compose -f deploy/docker-compose.yml -p kobra-relay config >"$RUN/compose.yml" 2>"$RUN/compose.err" ||
    fail "compose: docker-compose config rejects deploy/docker-compose.yml: $(cat "$RUN/compose.err")"
  summary=$(python3 scripts/stack/compose.py "$RUN/compose.yml" "$RUN/image.json" "$PWD") ||
    fail "compose: deploy/docker-compose.yml disagrees with the image or the shipped configs (above)"
  pass "compose: $summary"
}

main() {
  [ "$(id -u)" -eq 0 ] || fail "stack-check needs root (buildah, chroot, bind mounts); run it with sudo"
  mkdir -p "$CACHE"
  ensure_tools
  ensure_rabbitmq
  PIECE=image
  ensure_standins
  build_image
  mount_image
  check_image
  start_relay
  mapfile -t HEALTH < <(image_config | jq -r '.Healthcheck.Test[1:][]')
  check_run
  start_prometheus
  traffic
  check_alerts
  check_panels
  check_drain
  check_compose
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
