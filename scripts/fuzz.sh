#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each,
# default 20) and fails on any crash, panic, timeout or memory blow-up.
# libFuzzer keeps the corpus it grows between runs in the build cache, so
# each run starts where the last one stopped; a crashing input is saved under
# fuzz/artifacts/<target>/ and can be replayed with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --dev --sanitizer none <target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz 0.13.2 (once per machine)" >&2
  cargo install --locked --quiet cargo-fuzz --version 0.13.2
fi
# cargo-fuzz passes -Z flags to rustc; this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
# Outside the checkout, so fresh clones on one machine share the build.
export CARGO_TARGET_DIR=${KOBRA_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kobra-relay/fuzz-target}
# --dev builds in a third of the time of a release build; --sanitizer none:
# the code is safe Rust (unsafe_code = "forbid"), so ASan adds cost but no
# findings; panics, timeouts and the RSS limit are what we are after.
build_flags=(--dev --sanitizer none)
# The http_request target runs a relay whose spool lives under TMPDIR.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

cargo fuzz build "${build_flags[@]}"
for target in $(cargo fuzz list); do
  corpus="$CARGO_TARGET_DIR/corpus/$target"
  mkdir -p "$corpus"
  echo "fuzz: $target for ${seconds}s" >&2
  log="$CARGO_TARGET_DIR/$target.log"
  if ! cargo fuzz run "${build_flags[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 \
    -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$log" | sed "s/^/fuzz: $target /" >&2
done
