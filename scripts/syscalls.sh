#!/usr/bin/env bash
# System calls, page faults and context switches of one or more relay
# builds per HTTP request, counted by `perf stat` attached to the relay
# during one benchmark run (quorum queues, spool mode, 64 connections).
#   scripts/syscalls.sh [--visits N] [LABEL=BINARY[,NAME=VALUE...] ...]
#   (default: this checkout's release build, 30,000 visits)
# perf attaches once the relay has said its PID, so the first requests
# may be missed; counts are divided by the `writev` calls seen (one per
# answered request) rather than by the visits sent.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/rabbitmq.sh
. scripts/lib/rabbitmq.sh

visits=30000
if [ "${1:-}" = "--visits" ]; then
  visits=$2
  shift 2
fi
ensure_commands perf=linux-perf
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

calls=(writev recvfrom futex pread64 getrandom sendto write epoll_wait madvise fdatasync)
events="page-faults,context-switches"
for call in "${calls[@]}"; do events="$events,syscalls:sys_enter_$call"; done

echo "| relay | $(printf '%s | ' "${calls[@]}")all these calls | page faults | context switches |"
echo "|---|$(printf -- '---:|%.0s' "${calls[@]}")---:|---:|---:|"
for spec in "${builds[@]}"; do
  label=${spec%%=*}
  "$bench" --compare "$spec" --rounds 1 --visits "$visits" --concurrency 64 \
    >"$out/run.md" 2>"$out/run.log" &
  run=$!
  pid=""
  for _ in $(seq 1 600); do
    pid=$(sed -n 's/^relay pid \([0-9]*\):.*/\1/p' "$out/run.log" | tail -1)
    [ -n "$pid" ] && break
    kill -0 "$run" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$pid" ] || { cat "$out/run.log" >&2; exit 1; }
  perf stat -x, -e "$events" -p "$pid" -o "$out/stat.csv" 2>/dev/null || true
  wait "$run" || { cat "$out/run.log" >&2; exit 1; }
  python3 - "$label" "$out/stat.csv" "${calls[@]}" <<'EOF'
import sys
label, path, calls = sys.argv[1], sys.argv[2], sys.argv[3:]
counts = {}
for line in open(path):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit():
        counts[fields[2].replace("syscalls:sys_enter_", "")] = int(fields[0])
requests = counts.get("writev") or 1
per = lambda n: f"{n / requests:.2f}"
row = [per(counts.get(c, 0)) for c in calls]
row.append(per(sum(counts.get(c, 0) for c in calls)))
row += [per(counts.get("page-faults", 0)), per(counts.get("context-switches", 0))]
print(f"| {label} | " + " | ".join(row) + " |")
EOF
done
