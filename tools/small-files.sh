#!/usr/bin/env bash
# A million small files (distinct content, 100 x 100 directories of 100) through every command that
# walks a whole archive: cold create, unchanged re-run, diff after a few edits, export-tar, an index
# rebuilt from the packs, check, and a mount browsed with find. Prints wall time and peak RSS per
# step; with BORG=1, borg's cold create, re-run and mount beside them.
# usage: tools/small-files.sh [WORK_DIR] [DIRS]   (defaults /tmp/garret-small-files, 100: DIRS^2 * 100 files)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/garret-small-files} dirs=${2:-100}
g=$here/target/release/garret
[ -x "$g" ] || cargo build --release --manifest-path "$here/Cargo.toml"
export GARRET_PASSPHRASE=small GARRET_CACHE_DIR=$work/cache GARRET_SECURITY_DIR=$work/security
export BORG_PASSPHRASE=small BORG_BASE_DIR=$work/borg-base
rm -rf "$work"; mkdir -p "$work/mnt"
step() { local name=$1; shift; /usr/bin/time -f "$name: %e s wall, %M KiB peak RSS" "$@" > /dev/null; }
python3 - "$work/src" "$dirs" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for a in range(n):
    for b in range(n):
        d = f"{root}/d{a:02}/e{b:02}"
        os.makedirs(d)
        for c in range(100):
            with open(f"{d}/f{c:02}.txt", "w") as f:
                f.write(f"file {a} {b} {c}\n" * (1 + (a * b * c) % 7))
PY
echo "$(find "$work/src" -type f | wc -l) files"
sleep 2 # let the tree age past the files cache's one-second window
cd "$work"
"$g" init -e repokey repo > /dev/null 2>&1
step "garret cold create" "$g" create repo::a src
step "garret unchanged re-run" "$g" create repo::b src
echo new > src/d00/e00/new.txt; rm src/d01/e01/f01.txt; echo more >> src/d02/e02/f02.txt
step "garret create after 3 edits" "$g" create repo::c src
step "garret diff a c" "$g" diff repo::a c
"$g" diff repo::a c
step "garret export-tar" "$g" export-tar repo::a -
step "garret check" "$g" check repo
rm repo/index.sqlite
step "garret list (index rebuilt)" "$g" list repo
/usr/bin/time -f "garret mount -f, after find: %M KiB peak RSS" "$g" mount -f repo::a mnt 2> mount-time.txt &
until mountpoint -q mnt; do sleep 0.2; done
step "find in garret mount" find mnt
echo "garret mount RSS: $(ps -o rss= -p "$(pgrep -f "^$g mount -f repo::a")") KiB"
"$g" umount mnt; wait; cat mount-time.txt
if [ "${BORG:-0}" = 1 ]; then
  borg init -e repokey-blake2 brepo > /dev/null 2>&1
  step "borg cold create" borg create --compression zstd,3 brepo::a src
  step "borg unchanged re-run" borg create --compression zstd,3 brepo::b src
  borg mount brepo::a mnt
  step "find in borg mount" find mnt
  echo "borg mount RSS: $(ps -o rss= -p "$(pgrep -f "borg mount brepo::a")") KiB"
  fusermount3 -u mnt 2> /dev/null || fusermount -u mnt
fi
