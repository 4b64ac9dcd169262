#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 30) with its seed corpus in fuzz/corpus/.
# Needs cargo-fuzz (installed here when missing) and the nightly toolchain (sanitizers need -Z):
# rustup's nightly when present, else whatever `cargo` is (set RUSTUP_TOOLCHAIN to choose).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
if [ -z "${RUSTUP_TOOLCHAIN:-}" ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  export RUSTUP_TOOLCHAIN=nightly
fi
cd "$here/fuzz"
for t in pack_header blob_envelope item_stream manifest key_file config condemned_record; do
  echo "== $t ($secs s)"
  work=$(mktemp -d)
  cp -r "corpus/$t/." "$work/"
  cargo fuzz run "$t" "$work" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=1048576
  rm -rf "$work"
done
