#!/usr/bin/env bash
# The player's JavaScript checks: `tsc --noEmit` (checkJs, strict; tests/player/tsconfig.json)
# over templates/*.js, then the node:test unit tests of its pure modules (tests/player/*.test.mjs).
# Needs node and `npm ci` in tests/peers (TypeScript is a devDependency pinned in its lock file).
# Run from anywhere; tests/player_js.rs runs it under `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/../.."
tsc=tests/peers/node_modules/.bin/tsc
if [ ! -x "$tsc" ]; then
  echo "check.sh: no $tsc: run \`npm ci\` in tests/peers (.ci/run does)" >&2
  exit 2
fi
echo "== tsc --noEmit -p tests/player/tsconfig.json"
"$tsc" --noEmit -p tests/player/tsconfig.json
echo "== node --test tests/player/"
node --test tests/player/
