#!/usr/bin/env bash
# Fast start of segue's player page, measured in headless Chromium: runs
# tests/peers/fast_start.mjs RUNS times (default 5; each run a new browser, each case a fresh
# context with an empty HTTP cache) against a release `segue serve` started here on a generated
# library, and prints median / min / max of every figure next to its target:
#
#   cold start   click on a track -> `playing`, nothing prefetched (?prefetch=off)   target 200 ms
#   warm start   the same after the page's load-time prefetch                         target  50 ms
#   hls.js       the same track, same server, hls.js 1.7 defaults (the anchor; Spotify's paper
#                reports a 265 ms median playback latency)
#   two tabs     tab B's command -> tab A's media event (pause, resume), and #play-here -> B
#                playing / A paused, on loopback                                      target 100 ms
#
# cold, warm and hls.js run under Chromium's network emulation: 100 ms latency per request,
# 10 Mbit/s both ways (CDP Network.emulateNetworkConditions; it delays each HTTP request, not
# handshakes, and not WebSocket frames: see the header of fast_start.mjs). The two-tab session
# runs on loopback without emulation. A gapless album change is run too and its result shown.
#
# A benchmark, not a test: .ci/run does not run it. Needs what tests/peer_player.rs needs:
# ffmpeg, chromium, node and `npm ci` in tests/peers.
# Usage: bash benches/fast_start.sh [RUNS]
# Env: SEGUE_BENCH_DIR (work dir, default /tmp/segue-bench-fast-start), FAST_START_CASES
#      (default hlsjs,cold,warm,gapless,twotab), FAST_START_LATENCY_MS (100),
#      FAST_START_THROUGHPUT_BPS (10000000).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=${SEGUE_BENCH_DIR:-/tmp/segue-bench-fast-start}
cases=${FAST_START_CASES:-hlsjs,cold,warm,gapless,twotab}
latency=${FAST_START_LATENCY_MS:-100}
throughput=${FAST_START_THROUGHPUT_BPS:-10000000}
for tool in ffmpeg node python3 /usr/bin/chromium; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install ffmpeg chromium nodejs" >&2; exit 2; }
done
[ -f tests/peers/node_modules/playwright-core/package.json ] \
  || { echo "missing tests/peers/node_modules: (cd tests/peers && npm ci)" >&2; exit 2; }

cargo build --release --quiet
segue=$PWD/target/release/segue
mkdir -p "$work"

# --- library: "Start" (20 s) and gapless album "G" (two 40 s halves of one signal, cut at a
# sample boundary), as tests/peer_player.rs makes it; the signal is the tests' (tests/common).
# 40 s is longer than the page's buffer goal, so track 2 is appended while track 1 plays.
lib=$work/library
half=1764000 # samples at 44.1 kHz
ids=$work/ids-$half # names the layout, so that a change of it makes a new library
if [ ! -s "$ids" ]; then
  rm -rf "$lib" "$work/inputs"; mkdir -p "$work/inputs"
  signal() { # seconds -> lavfi source
    echo "aevalsrc='0.25*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*2*t))+0.15*sin(2*PI*330*t)+0.1*sin(2*PI*(440+200*t)*t)|0.25*sin(2*PI*277*t)*(0.6+0.4*cos(2*PI*3*t))+0.15*sin(2*PI*415*t)+0.1*sin(2*PI*(660-100*t)*t)':s=44100:d=$1"
  }
  ff() { ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
  ff -f lavfi -i "$(signal 20)" -metadata title=Start -c:a flac "$work/inputs/start.flac"
  ff -f lavfi -i "$(signal 80)" -c:a pcm_s16le "$work/inputs/album.wav"
  ff -i "$work/inputs/album.wav" -af atrim=end_sample=$half -metadata title=One -metadata album=G \
    -metadata artist=Segue -metadata track=1/2 -c:a flac "$work/inputs/one.flac"
  ff -i "$work/inputs/album.wav" -af atrim=start_sample=$half,asetpts=PTS-STARTPTS -metadata title=Two \
    -metadata album=G -metadata artist=Segue -metadata track=2/2 -c:a flac "$work/inputs/two.flac"
  "$segue" ingest --json --library "$lib" "$work/inputs/start.flac" "$work/inputs/one.flac" \
    "$work/inputs/two.flac" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' >"$ids"
  [ "$(wc -l <"$ids")" = 3 ] || { echo "ingest failed" >&2; rm -f "$ids"; exit 1; }
fi
start_id=$(sed -n 1p "$ids")
album_ids=$(sed -n 2p "$ids"),$(sed -n 3p "$ids")

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
RUST_LOG=warn "$segue" serve --library "$lib" --addr 127.0.0.1:0 >"$work/segue.out" 2>"$work/segue.err" &
pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$work/segue.out" 2>/dev/null && break; sleep 0.1; done
origin=$(sed -n 's/^listening on //p' "$work/segue.out")
[ -n "$origin" ] || { echo "segue did not start:" >&2; cat "$work/segue.err" >&2; exit 1; }

echo "# segue $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty') (release) at $origin; $(nproc) cores"
echo "# $runs runs of: $cases; emulated latency $latency ms, $throughput bit/s (Chromium emulation)"
rm -f "$work"/run-*.json
for i in $(seq "$runs"); do
  # timeout: the script has its own deadline; this is the backstop for a wedged node.
  (cd tests/peers && timeout 600 node fast_start.mjs --origin "$origin" --track "$start_id" \
    --album "$album_ids" --cases "$cases" --latency-ms "$latency" --throughput-bps "$throughput") \
    >"$work/run-$i.json" 2>"$work/run-$i.err" || echo "run $i: node exited $? (see $work/run-$i.err)" >&2
  python3 - "$work/run-$i.json" "$i" <<'PY' >&2
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"run {sys.argv[2]}: no summary ({e})"); sys.exit()
f = s["figures"]
bad = [c["case"] for c in s["cases"] if not c["ok"]]
print(f"run {sys.argv[2]}: " + ", ".join(f"{k}={v}" for k, v in f.items()) + (f"; FAILED: {bad}" if bad else ""))
PY
done

echo
python3 - "$work" "$runs" <<'PY'
import json, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
summaries = []
for i in range(1, runs + 1):
    try:
        summaries.append(json.load(open(f"{work}/run-{i}.json")))
    except Exception:
        pass
if not summaries:
    sys.exit("no run produced a summary")
print(f"Chromium {summaries[0]['chromium']}, {len(summaries)} of {runs} runs produced a summary")
rows = [
    ("cold start (click -> playing)", "cold_ms", 200),
    ("warm start (prefetched)", "warm_ms", 50),
    ("hls.js, same track (anchor)", "hlsjs_ms", None),
    ("two tabs: pause reaches A", "two_tab_pause_ms", 100),
    ("two tabs: resume reaches A (playing)", "two_tab_resume_ms", 100),
    ("two tabs: #play-here -> B playing", "two_tab_transfer_ms", 100),
]
print("| figure | median ms | min | max | n | target | met (median) | runs within target |")
print("|---|---:|---:|---:|---:|---:|---|---:|")
for label, key, target in rows:
    xs = [s["figures"][key] for s in summaries if s["figures"].get(key) is not None]
    if not xs:
        print(f"| {label} | - | - | - | 0 | {target or '-'} | not measured | - |")
        continue
    med = statistics.median(xs)
    if target is None:
        met, within = "anchor; Spotify's median: 265 ms", "-"
    else:
        met, within = ("yes" if med <= target else "NO"), f"{sum(x <= target for x in xs)}/{len(xs)}"
    print(f"| {label} | {med:.0f} | {min(xs):.0f} | {max(xs):.0f} | {len(xs)} | {target or '-'} | {met} | {within} |")
# The A side of the transfer (A's pause) is a target too: the command changes A's state.
xs = [c.get("transfer_a_pause_ms") for s in summaries for c in s["cases"] if c["case"] == "twotab" and c.get("transfer_a_pause_ms") is not None]
if xs:
    med = statistics.median(xs)
    print(f"| two tabs: #play-here -> A paused | {med:.0f} | {min(xs):.0f} | {max(xs):.0f} | {len(xs)} | 100 | "
          f"{'yes' if med <= 100 else 'NO'} | {sum(x <= 100 for x in xs)}/{len(xs)} |")
cold = [s["figures"]["cold_ms"] for s in summaries if s["figures"].get("cold_ms") is not None]
hls = [s["figures"]["hlsjs_ms"] for s in summaries if s["figures"].get("hlsjs_ms") is not None]
if cold and hls:
    print(f"\ncold start / hls.js (medians): {statistics.median(cold) / statistics.median(hls):.2f}")
print()
for name in ["hlsjs", "cold", "warm", "gapless", "twotab"]:
    cs = [c for s in summaries for c in s["cases"] if c["case"] == name]
    if not cs:
        continue
    ok = sum(1 for c in cs if c["ok"])
    line = f"{name}: {ok}/{len(cs)} runs passed the functional checks"
    fails = sorted({f for c in cs for f in c["failures"]})
    if fails:
        line += "; failures: " + " | ".join(f[:200] for f in fails[:5])
    print(line)
gap = [c for s in summaries for c in s["cases"] if c["case"] == "gapless" and c.get("samples")]
if gap:
    print("gapless, per run (from the seek to 4 s before the end of track 1, through the change):")
    for c in gap:
        print(f"  {c['samples']} samples over {c['sampled_s']} s: at most {c['buffered_ranges_max']} buffered range(s), "
              f"{len(c['stall_events'])} stall event(s), shown as track 2 from currentTime {c['switch_ct']}, "
              f"playhead speed {c['play_rate']}x, longest gap between samples {c.get('longest_sample_gap_ms')} ms, "
              f"{len(c.get('long_tasks') or [])} long task(s)")
hw = [len(c.get("hls_nonfatal_errors") or []) for s in summaries for c in s["cases"] if c["case"] == "hlsjs"]
if any(hw):
    print(f"hls.js non-fatal errors (it recovers; not failures) per run: {hw}")
PY
