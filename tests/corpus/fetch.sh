#!/usr/bin/env bash
# Fetches the real-world audio corpus of tests/real_world_corpus.rs: the pinned Debian packages
# of packages.txt, downloaded with `apt-get download` and unpacked with `dpkg -x` under
# tests/corpus/.cache/ (never installed). Only the files that packages.txt keeps are kept.
# Idempotent: a package already unpacked is skipped. Writes .cache/corpus.list, the kept files
# (relative to .cache/), one a line, which the test reads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache="$here/.cache"
mkdir -p "$cache/files"
shopt -s nullglob

updated=0
download() {
  # Retries once after refreshing the package lists (a fresh machine has none).
  if ! apt-get download -q=2 "$1" 2>/dev/null; then
    if [ "$updated" = 0 ]; then
      echo "apt-get update (package lists)"
      apt-get update -qq
      updated=1
    fi
    apt-get download -q=2 "$1"
  fi
}

list_tmp=$(mktemp)
trap 'rm -f "$list_tmp"' EXIT
fetched=0 present=0 bytes=0
while read -r spec rest; do
  # Split without pathname expansion (the globs are expanded inside the package root below).
  read -r -a globs <<<"$rest"
  case "$spec" in '' | '#'*) continue ;; esac
  name=${spec%%=*}
  dir="$cache/files/$name"
  # .spec holds the line it was made from: a new version or new globs fetch it again.
  if [ "$(cat "$dir/.spec" 2>/dev/null)" != "$spec $rest" ]; then
    work=$(mktemp -d "$cache/.work.XXXXXX")
    # apt drops its privileges to _apt when it can; let it write here.
    chmod 0777 "$work"
    (cd "$work" && download "$spec")
    deb=("$work"/*.deb)
    bytes=$((bytes + $(stat -c %s "${deb[0]}")))
    dpkg -x "${deb[0]}" "$work/root"
    rm -rf "$dir"
    mkdir -p "$dir"
    for glob in "${globs[@]}"; do
      matched=("$work/root/"$glob)
      if [ "${#matched[@]}" = 0 ]; then
        echo "fetch.sh: $spec: no file matches $glob" >&2
        exit 1
      fi
      for f in "${matched[@]}"; do
        rel=${f#"$work/root/"}
        mkdir -p "$dir/$(dirname "$rel")"
        cp -p "$f" "$dir/$rel"
      done
    done
    echo "$spec $rest" >"$dir/.spec"
    rm -rf "$work"
    fetched=$((fetched + 1))
    echo "fetched $spec"
  else
    present=$((present + 1))
  fi
  for glob in "${globs[@]}"; do
    for f in "$dir/"$glob; do
      echo "${f#"$cache/"}" >>"$list_tmp"
    done
  done
done <"$here/packages.txt"
sort -u "$list_tmp" >"$cache/corpus.list"
echo "corpus: $(wc -l <"$cache/corpus.list") files from $((fetched + present)) packages" \
  "($fetched fetched, $(numfmt --to=iec "$bytes") downloaded; $present already present) in $cache"
