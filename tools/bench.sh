#!/usr/bin/env bash
# Whole-process benchmark: garret side by side with borg and restic (and rustic when installed)
# on the ../shared/bench dataset, in one run (cold create, unchanged re-run, day-2 and day-3
# creates, extract, check, prune, compact), medians over ROUNDS.
# usage: tools/bench.sh [-r ROUNDS] [TOOL...]     (default tools: garret borg restic)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${GARRET_SHARED:-$here/../shared}
rounds=3
while getopts r: o; do case $o in r) rounds=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
tools=("$@"); [ ${#tools[@]} -gt 0 ] || tools=(garret borg restic)
for t in "${tools[@]}"; do
  case $t in
    borg) command -v borg >/dev/null || apt-get install -y borgbackup ;;
    restic) command -v restic >/dev/null || apt-get install -y restic ;;
  esac
done
cargo build --release --manifest-path "$here/Cargo.toml"
GARRET=$here/target/release/garret exec "$shared/bench/compare.sh" -r "$rounds" "${tools[@]}"
