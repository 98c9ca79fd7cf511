#!/usr/bin/env bash
# CPU time per request of two segue builds, A against B, in interleaved rounds: for changes whose
# effect is smaller than this VM's drift in requests/s (compare_nginx.sh's ratio). Each server's
# process CPU time (user + kernel, from /proc) over the requests wrk completed, at one
# concurrency, on the rotating segment list of compare_nginx.sh; medians over the rounds.
#
# A benchmark, not a test. Needs wrk, and the library and wrk script that compare_nginx.sh
# builds (run it once). Usage:
#   bash benches/ab_origin.sh A_BIN B_BIN [SECONDS_PER_RUN]   (default 8)
# Env: BENCH_ROUNDS (default 4), BENCH_CONNECTIONS (default 64), SEGUE_BENCH_DIR (as in
#      compare_nginx.sh), AB_LOG=1 (the default access log on, written to a file; default off),
#      AB_SIGNED=1 (serve with a signing key and request the signed URLs the API hands out).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
bins=("$1" "$2")
seconds=${3:-8}
rounds=${BENCH_ROUNDS:-4}
conns=${BENCH_CONNECTIONS:-64}
work=${SEGUE_BENCH_DIR:-/tmp/segue-bench-nginx}
for f in "$work/library/tracks" "$work/paths.txt" "$work/rotate.lua"; do
  [ -e "$f" ] || { echo "missing $f: run benches/compare_nginx.sh once" >&2; exit 2; }
done
ab=$work/ab; rm -rf "$ab"; mkdir -p "$ab"
key=ab-origin-signing-key-of-32-bytes

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

urls=()
for i in 0 1; do
  args=(serve --library "$work/library" --addr 127.0.0.1:0)
  [ "${AB_SIGNED:-0}" = 1 ] && args+=(--signing-key "$key")
  if [ "${AB_LOG:-0}" = 1 ]; then
    env -u RUST_LOG taskset -c 0-1 "${bins[$i]}" "${args[@]}" >"$ab/out.$i" 2>"$ab/log.$i" &
  else
    RUST_LOG=warn taskset -c 0-1 "${bins[$i]}" "${args[@]}" >"$ab/out.$i" 2>"$ab/log.$i" &
  fi
  pids+=($!)
  for _ in $(seq 100); do grep -q '^listening on ' "$ab/out.$i" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^listening on //p' "$ab/out.$i")
  [ -n "$url" ] || { echo "${bins[$i]} did not start:" >&2; cat "$ab/log.$i" >&2; exit 1; }
  urls+=("$url")
done

paths=$work/paths.txt
if [ "${AB_SIGNED:-0}" = 1 ]; then
  # Each /media/ID/… behind the token the API hands out for that track (both servers share
  # the key, so the URLs serve on both).
  python3 - "${urls[0]}" "$work/paths.txt" >"$ab/paths.txt" <<'PY'
import json, sys, urllib.request
origin, paths = sys.argv[1], sys.argv[2]
base, offset = {}, 0
while True:
    page = json.load(urllib.request.urlopen(f"{origin}/api/tracks?offset={offset}&limit=100"))
    base.update({t["id"]: t["hls"].rsplit("/media/", 1)[0] for t in page["tracks"]})
    offset += len(page["tracks"])
    if not page["tracks"] or offset >= page["total"]:
        break
for line in open(paths):
    line = line.strip()
    print(base[line.split("/")[2]] + line)
PY
  paths=$ab/paths.txt
fi

cpu_ticks() { # pid -> user+system clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
run() { # index -> "rps p99_ms cpu_us_per_request"
  local before after line
  before=$(cpu_ticks "${pids[$1]}")
  line=$(taskset -c 0-1 wrk -t2 -c"$conns" -d"$seconds"s --timeout 10s -s "$work/rotate.lua" \
    "${urls[$1]}" -- "$paths" | grep '^RESULT')
  after=$(cpu_ticks "${pids[$1]}")
  python3 - "$line" "$before" "$after" "$seconds" "$(getconf CLK_TCK)" <<'PY'
import re, sys
line, before, after, seconds, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
r = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
if r["errors"] or r["non2xx"]:
    sys.exit(f"errors in the run: {line}")
requests = r["rps"] * seconds
print(f'{r["rps"]:.0f} {r["p99_ms"]:.2f} {(after - before) / hz * 1e6 / requests:.2f}')
PY
}

onoff() { if [ "$1" = 1 ]; then echo on; else echo off; fi; }
echo "# A: ${bins[0]}  B: ${bins[1]}; $conns connections, $rounds rounds of $seconds s," \
  "access log $(onoff "${AB_LOG:-0}"), signed URLs $(onoff "${AB_SIGNED:-0}")"
run 0 >/dev/null; run 1 >/dev/null # warm-up: page cache, hot-file cache
: >"$ab/results.txt"
for round in $(seq "$rounds"); do
  order="0 1"; [ $((round % 2)) = 0 ] && order="1 0"
  for i in $order; do
    echo "$i $(run "$i")" | tee -a "$ab/results.txt" >&2
  done
done
python3 - "$ab/results.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    i, rps, p99, cpu = line.split()
    rows.setdefault(i, []).append((float(rps), float(p99), float(cpu)))
print("| build | req/s | p99 ms | CPU µs/request |")
print("|---|---:|---:|---:|")
for i, name in (("0", "A"), ("1", "B")):
    runs = rows[i]
    print(f"| {name} | {statistics.median(r[0] for r in runs):.0f} | "
          f"{statistics.median(r[1] for r in runs):.2f} | {statistics.median(r[2] for r in runs):.1f} |")
PY
