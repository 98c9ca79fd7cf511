#!/usr/bin/env bash
# The short fuzz run of CI: builds the instrumented targets once, then fuzzes each for
# SECONDS_EACH (default 20) starting from the kept corpus in fuzz/corpus/, which it leaves
# untouched (new inputs go to a scratch directory). Exits non-zero on the first crash,
# allocation over 1 GiB, memory over 2 GiB or 10 s hang; the input is then in fuzz/artifacts/.
#
#   bash fuzz/ci.sh [SECONDS_EACH]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-20}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

start=$SECONDS
"$here/run.sh" --build
# This crate is its own workspace, which the main `cargo fmt --all` does not reach. (After the
# build, which makes fuzz/Cargo.lock from the main one; cargo fmt would otherwise resolve anew.)
cargo fmt --manifest-path "$here/Cargo.toml" -- --check
echo "fuzz: built in $((SECONDS - start)) s"
for target in range control_message decode; do
  log="$scratch/$target.log"
  if ! SEGUE_FUZZ_SCRATCH="$scratch/$target" "$here/run.sh" "$target" "$seconds" >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "fuzz: $target FAILED; reproduce with: fuzz/run.sh $target fuzz/artifacts/$target/<file>"
    exit 1
  fi
  # The closing status line, e.g. "#96427 DONE cov: 9467 ft: 20876 corp: 1953/2367Kb ...".
  summary=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  echo "fuzz: $target ok, ${seconds} s: ${summary:-no DONE line}"
done
echo "fuzz: done in $((SECONDS - start)) s"
