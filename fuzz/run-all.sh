#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60) from the seed corpus in
# fuzz/corpus/<target>. Exits non-zero on the first crash, leak or timeout; libFuzzer leaves
# the reproducer in fuzz/artifacts/<target>/. New inputs go to a scratch corpus, so the seed
# corpus in the repository stays small.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz passes nightly-only `-Z`
# flags (sanitizers); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

start=$(date +%s)
cargo fuzz build -O
echo "fuzz: built every target in $(( $(date +%s) - start )) s"
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${seconds} s"
  log="$scratch/$target.log"
  status=0
  cargo fuzz run -O "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  # Only the summary of libFuzzer's chatter.
  grep -E '^(Done|stat::number_of_executed_units|==[0-9]+==|SUMMARY|thread .* panicked|artifact_prefix)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target FAILED (reproducer in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds} s without a crash; total $(( $(date +%s) - start )) s"
