#!/usr/bin/env bash
# Sequential read of one large file through `garret mount` and `borg mount`, side by side in
# one run, plus a 4 KiB read near the end of the file (how long a ranged read takes).
#
# Usage: tools/bench-mount.sh [-r ROUNDS] [-s SIZE_MIB] [-d DATA_DIR] [-o OUT_DIR]
#   DATA_DIR: a tree to draw the file's bytes from (default /tmp/garret-bench/data, made by
#   ../shared/bench/gen.py); the file is the first SIZE_MIB of a tar of it, so it mixes text,
#   dumps and incompressible assets like the backup dataset.
# Needs: garret (GARRET=path), borg with llfuse, fusermount3 or root, /dev/fuse.
# Prints one TSV row per tool, round and step: tool round step wall_s; then medians.
set -euo pipefail
rounds=3
size=1024
data=/tmp/garret-bench/data
out=/tmp/garret-bench-mount
while getopts "r:s:d:o:" opt; do
  case $opt in
    r) rounds=$OPTARG ;;
    s) size=$OPTARG ;;
    d) data=$OPTARG ;;
    o) out=$OPTARG ;;
    *) exit 2 ;;
  esac
done
garret=${GARRET:-$(cd "$(dirname "$0")/.." && pwd)/target/release/garret}
export GARRET_PASSPHRASE=bench BORG_PASSPHRASE=bench
export GARRET_SECURITY_DIR=$out/security GARRET_KEYS_DIR=$out/keys BORG_BASE_DIR=$out/borg-home
rm -rf "$out"
mkdir -p "$out/src" "$out/mnt"
# (tar is cut off by head: its SIGPIPE is expected)
(set +o pipefail; tar -C "$data" -cf - . 2>/dev/null | head -c $((size << 20)) > "$out/src/big.bin")
echo "file: $size MiB from $data" >&2

"$garret" init -e repokey "$out/garret-repo" >/dev/null 2>&1
(cd "$out" && "$garret" create -C zstd,3 garret-repo::a src)
borg init -e repokey "$out/borg-repo" >/dev/null
(cd "$out" && borg create -C zstd,3 borg-repo::a src)

now() { date +%s.%N; }
wait_mounted() {
  for _ in $(seq 1 300); do
    mountpoint -q "$1" && return 0
    sleep 0.1
  done
  echo "mount did not come up at $1" >&2
  exit 2
}

rows=$out/results.tsv
printf 'tool\tround\tstep\twall_s\n' > "$rows"
for round in $(seq 1 "$rounds"); do
  for tool in garret borg; do
    sync
    echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    if [ "$tool" = garret ]; then
      "$garret" mount "$out/garret-repo::a" "$out/mnt"
    else
      borg mount "$out/borg-repo::a" "$out/mnt"
    fi
    wait_mounted "$out/mnt"
    t0=$(now)
    dd if="$out/mnt/src/big.bin" of=/dev/null bs=4k skip=$(( (size << 8) - 3 )) count=1 status=none
    t1=$(now)
    cat "$out/mnt/src/big.bin" > /dev/null
    t2=$(now)
    if [ "$tool" = garret ]; then "$garret" umount "$out/mnt"; else borg umount "$out/mnt"; fi
    printf '%s\t%s\tread-4k-at-end\t%.3f\n' "$tool" "$round" "$(echo "$t1 - $t0" | bc)" >> "$rows"
    printf '%s\t%s\tsequential-read\t%.3f\n' "$tool" "$round" "$(echo "$t2 - $t1" | bc)" >> "$rows"
  done
done
cat "$rows"
python3 - "$rows" "$size" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
size = int(sys.argv[2])
med = {}
for r in rows:
    med.setdefault((r["tool"], r["step"]), []).append(float(r["wall_s"]))
print("\nmedians (wall s):")
for step in ["sequential-read", "read-4k-at-end"]:
    g = statistics.median(med[("garret", step)])
    b = statistics.median(med[("borg", step)])
    extra = f"  ({size / g:.0f} vs {size / b:.0f} MiB/s)" if step == "sequential-read" else ""
    print(f"{step:16} garret {g:.3f}  borg {b:.3f}  borg/garret {b / g:.2f}x{extra}")
EOF
