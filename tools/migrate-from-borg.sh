#!/usr/bin/env bash
# Migrate a whole borg repository into a garret repository, archive by archive, oldest first:
#
#   borg export-tar OLD::A - | garret import-tar --timestamp <A's start time> NEW::A -
#
# Usage: tools/migrate-from-borg.sh BORG_REPO GARRET_REPO [ARCHIVE_GLOB]
#
# Both repositories must be reachable without prompts: set BORG_PASSPHRASE (or BORG_PASSCOMMAND)
# and GARRET_PASSPHRASE (or GARRET_PASSCOMMAND). GARRET_REPO must already exist (`garret init`).
# Archives already present in GARRET_REPO are skipped, so an interrupted migration can be re-run.
# Set GARRET=/path/to/garret to use a garret that is not on PATH.
#
# What carries over is what `borg export-tar` writes: content, modes, owners, symlinks,
# hardlinks, FIFOs and devices, mtimes. borg 1.2's export-tar writes GNU tar, which has no
# extended attributes and whole-second mtimes; those are lost in the move (borg 2's
# `--tar-format=PAX` keeps them; this script uses it when borg supports it).
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BORG_REPO GARRET_REPO [ARCHIVE_GLOB]" >&2
  exit 2
fi
borg_repo=$1
garret_repo=$2
glob=${3:-*}
garret=${GARRET:-garret}

tar_format=()
if borg export-tar --help 2>/dev/null | grep -q -- '--tar-format'; then
  tar_format=(--tar-format=PAX)
fi

existing=$("$garret" list --short "$garret_repo")
migrated=0
skipped=0
# borg prints local start times; garret's --timestamp takes UTC.
while IFS=$'\t' read -r name start; do
  [ -n "$name" ] || continue
  # shellcheck disable=SC2053
  [[ $name == $glob ]] || continue
  if grep -qxF -- "$name" <<<"$existing"; then
    echo "skip $name (already in $garret_repo)"
    skipped=$((skipped + 1))
    continue
  fi
  utc=$(date -u -d "$start" +%Y-%m-%dT%H:%M:%S)
  echo "migrate $name ($utc UTC)"
  set +e
  borg export-tar "${tar_format[@]}" "$borg_repo::$name" - |
    "$garret" import-tar --timestamp "$utc" --comment "migrated from borg $borg_repo::$name" "$garret_repo::$name" -
  status=("${PIPESTATUS[@]}")
  set -e
  if [ "${status[0]}" -ne 0 ] || [ "${status[1]}" -gt 1 ]; then
    # import-tar refuses a stream without its end-of-archive block; deleting here also covers a
    # borg that failed after writing a complete-looking tar. Never keep a partial copy.
    "$garret" delete "$garret_repo::$name" >/dev/null 2>&1 || true
    echo "error: migrating $name failed (borg export-tar rc ${status[0]}, garret import-tar rc ${status[1]})" >&2
    exit 2
  fi
  migrated=$((migrated + 1))
done < <(borg list --format '{archive}{TAB}{time:%Y-%m-%dT%H:%M:%S}{NL}' "$borg_repo")

echo "done: $migrated archive(s) migrated, $skipped already present"
