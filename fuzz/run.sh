#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the stable toolchain (the
# flags cargo-fuzz passes, less the nightly-only sanitizer; see README.md), then:
#
#   fuzz/run.sh TARGET [SECONDS]   fuzz TARGET for SECONDS (default 60) on fuzz/corpus/TARGET,
#                                  adding what it finds there; non-zero exit on a crash, an
#                                  allocation over 1 GiB, memory over 2 GiB or a 10 s hang
#   fuzz/run.sh TARGET FILE...     run TARGET once on each FILE (reproduce an artifact)
#   fuzz/run.sh TARGET --merge     minimize fuzz/corpus/TARGET: keep the seeds (seed-*) and
#                                  the smallest inputs that reach the same edges
#   fuzz/run.sh --build            only build
#
# TARGET: range, control_message or decode. Extra libFuzzer flags can be given in
# SEGUE_FUZZ_ARGS (e.g. "-workers=2 -jobs=2"). Crashes go to fuzz/artifacts/TARGET/.
# SEGUE_FUZZ_CHECKS=off builds without overflow checks and debug assertions, as segue's release
# binary is built (into fuzz/target/unchecked): an overflow that panics in the default build
# wraps there, and may lead somewhere else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
targets=(range control_message decode)

# Most bytes per input: a Range field or a control frame is small; the decode seeds are files
# of 20 to 50 ms (up to about 4 KB), and longer inputs slow each run without covering more.
declare -A max_len=([range]=1024 [control_message]=8192 [decode]=8192)

host=$(rustc -vV | sed -n 's/^host: //p')
checks=${SEGUE_FUZZ_CHECKS:-on}
case "$checks" in
  on) target_dir="$here/target" ;;
  off) target_dir="$here/target/unchecked" ;;
  *) echo "SEGUE_FUZZ_CHECKS must be on or off" >&2 && exit 2 ;;
esac
bin_dir="$target_dir/$host/release"

build() {
  # cargo-fuzz's instrumentation (SanitizerCoverage, read by libFuzzer): edge counters and
  # their PC table for coverage, comparison operands for libFuzzer's value-guided mutations,
  # stack depth as an extra feature, no folding of branches (each comparison stays an edge);
  # plus debug assertions, overflow checks and cfg(fuzzing). cargo-fuzz by default also passes
  # -Zsanitizer=address, which stable rustc refuses; src/lib.rs stands in for the one part of it
  # libFuzzer needs here (seeing allocations, for -malloc_limit_mb). It also passes
  # -Ccodegen-units=1, left out: on 2 cores the build time matters more. `--target` keeps these
  # flags off build scripts and proc macros, which run on the host and must not need
  # libFuzzer's symbols.
  local rustflags=(
    --cfg fuzzing
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  )
  if [ "$checks" = on ]; then
    rustflags+=(-Cdebug-assertions -Coverflow-checks)
  else
    export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=false CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=false
  fi
  # The versions are the main crate's: fuzz/Cargo.lock (not in git) starts as a copy of
  # ../Cargo.lock, to which cargo adds libfuzzer-sys; it is made again when either input changes,
  # so it can never go stale the way a second committed lock file would.
  local lock="$here/Cargo.lock"
  if [ ! -f "$lock" ] || [ "$here/../Cargo.lock" -nt "$lock" ] || [ "$here/Cargo.toml" -nt "$lock" ]; then
    cp "$here/../Cargo.lock" "$lock"
  fi
  RUSTFLAGS="${rustflags[*]}" cargo build --release \
    --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" --target "$host" --bins
}

usage() {
  sed -n '2,17p' "$0" >&2
  exit 2
}

[ $# -ge 1 ] || usage
if [ "$1" = "--build" ]; then
  build
  exit 0
fi
target=$1
shift
[[ " ${targets[*]} " == *" $target "* ]] || usage
build

corpus="$here/corpus/$target"
artifacts="$here/artifacts/$target"
mkdir -p "$corpus" "$artifacts"
# Limits of every run: what segue must survive on one input.
limits=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 "-max_len=${max_len[$target]}")
dict=()
[ -f "$here/dicts/$target.dict" ] && dict=("-dict=$here/dicts/$target.dict")
# shellcheck disable=SC2206 # word splitting of the extra flags is intended
extra=(${SEGUE_FUZZ_ARGS:-})

if [ "${1:-}" = "--merge" ]; then
  # Into a fresh directory holding the hand-made seeds (seed-*, always kept), add the smallest
  # inputs that reach the edges the corpus reaches, then swap it in (never left half merged).
  # -use_counters=0: edges, not hit counts, decide, which keeps the repository's corpus small;
  # a run finds the hit-count variations again within seconds.
  fresh=$(mktemp -d "$target_dir/merge-$target.XXXXXX")
  find "$corpus" -maxdepth 1 -name 'seed-*' -exec cp {} "$fresh/" \;
  "$bin_dir/$target" -merge=1 -use_counters=0 "${limits[@]}" "${extra[@]}" "$fresh" "$corpus"
  rm -rf "$corpus"
  mv "$fresh" "$corpus"
  chmod 755 "$corpus"
  echo "$target corpus: $(find "$corpus" -type f | wc -l) files, $(du -sh "$corpus" | cut -f1)"
  exit 0
fi

if [ $# -ge 1 ] && [ -e "$1" ]; then
  exec "$bin_dir/$target" "${limits[@]}" "${extra[@]}" "$@"
fi

seconds=${1:-60}
[[ "$seconds" =~ ^[0-9]+$ ]] || usage
# New inputs go to the first directory; SEGUE_FUZZ_SCRATCH (ci.sh) keeps the repository's
# corpus read-only by naming a scratch directory for them.
dirs=("$corpus")
if [ -n "${SEGUE_FUZZ_SCRATCH:-}" ]; then
  mkdir -p "$SEGUE_FUZZ_SCRATCH"
  dirs=("$SEGUE_FUZZ_SCRATCH" "$corpus")
fi
exec "$bin_dir/$target" "${limits[@]}" "${dict[@]}" "${extra[@]}" \
  -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/" "${dirs[@]}"
