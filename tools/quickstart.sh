#!/usr/bin/env bash
# Build garret and run a real backup into a local repository, then list and verify it.
# usage: tools/quickstart.sh [SOURCE_DIR [REPO]]
#   SOURCE_DIR defaults to this project's src/ directory, REPO to /tmp/garret-quickstart/repo.garret.
#   The passphrase comes from GARRET_PASSPHRASE (a demo one is used when unset).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$here/src}
repo=${2:-/tmp/garret-quickstart/repo.garret}
export GARRET_PASSPHRASE=${GARRET_PASSPHRASE:-quickstart-demo-passphrase}
cargo build --release --manifest-path "$here/Cargo.toml"
g=$here/target/release/garret
mkdir -p "$(dirname "$repo")"
[ -f "$repo/config" ] || "$g" init -e repokey "$repo"
name="quickstart-$(date +%Y-%m-%dT%H:%M:%S)"
"$g" create --stats "$repo::$name" "$src" --exclude '**/target'
"$g" list "$repo"
restore=$(mktemp -d)
(cd "$restore" && "$g" extract "$repo::$name")
diff -r "$src" "$restore/${src#/}" && echo "quickstart: backup $name restored byte for byte from $repo"
rm -rf "$restore"
