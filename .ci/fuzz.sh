#!/usr/bin/env bash
# Builds the fuzz targets and runs each briefly over its committed corpus. libFuzzer through
# `cargo fuzz --sanitizer none`, which builds on the stable toolchain (the sanitizers need
# nightly; Rust's own checks and debug assertions still turn bugs into crashes).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${FUZZ_SECONDS:-10}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo fuzz build --sanitizer none
for target in $(cargo fuzz list); do
    # New inputs go to a scratch directory: the committed corpus is only read.
    scratch="$(mktemp -d)"
    echo "== fuzz $target (${SECONDS_EACH}s)"
    cargo fuzz run --sanitizer none "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=3000 2>&1 | tail -n 3
    rm -rf "$scratch"
done
