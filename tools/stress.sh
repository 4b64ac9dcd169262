#!/usr/bin/env bash
# Scale tests too slow for the default suite: 1,000,000 empty files in one directory, and a 100 GiB
# sparse file. Creates, lists, extracts and compares each; prints wall time and peak RSS per step.
# usage: tools/stress.sh [WORK_DIR] [FILES] [SPARSE_GIB]     (defaults /tmp/garret-stress, 1000000, 100)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/garret-stress} files=${2:-1000000} gib=${3:-100}
g=$here/target/release/garret
[ -x "$g" ] || cargo build --release --manifest-path "$here/Cargo.toml"
export GARRET_PASSPHRASE=stress GARRET_CACHE_DIR=$work/cache GARRET_SECURITY_DIR=$work/security
rm -rf "$work"; mkdir -p "$work/src/many" "$work/out"
step() { local name=$1; shift; /usr/bin/time -f "$name: %e s wall, %M KiB peak RSS" "$@" > /dev/null; }
python3 - "$work/src/many" "$files" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    open(os.path.join(d, f"f{i:07d}"), "w").close()
PY
truncate -s "${gib}G" "$work/src/sparse"
printf 'start' | dd of="$work/src/sparse" conv=notrunc status=none
printf 'end' | dd of="$work/src/sparse" bs=1 seek=$((gib * 1024 * 1024 * 1024 - 3)) conv=notrunc status=none
step init "$g" init -e repokey "$work/repo"
# Files changed within the last second are not remembered by the files cache (a change in the same
# timestamp tick would go unseen); let the fresh tree age so the re-run measures the cache.
sleep 2
cd "$work"
step "create ($files empty files + ${gib} GiB sparse)" "$g" create "$work/repo::a" src
step "unchanged re-run" "$g" create "$work/repo::b" src
step "list" "$g" list "$work/repo::a"
cd "$work/out"
step extract "$g" extract "$work/repo::a"
cmp "$work/src/sparse" "$work/out/src/sparse" && echo "sparse file identical; $(du -k "$work/out/src/sparse" | cut -f1) KiB allocated"
[ "$(ls "$work/out/src/many" | wc -l)" = "$files" ] && echo "all $files files restored"
