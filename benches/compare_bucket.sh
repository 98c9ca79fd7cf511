#!/usr/bin/env bash
# A library in a bucket against the same library in a directory, on the same machine in the same
# run (issue 13's speed targets). The bucket is moto's S3 server (`moto_server`, as the tests
# use), started here on a free loopback port and stopped on exit.
#
#   1. Ingest: one input (default /tmp/segue-bench/5min-music.flac, else a generated 5-minute
#      music-like FLAC) into a fresh directory and into a fresh bucket prefix, interleaved runs;
#      median wall time and the ratio bucket/local (target <= 1.1).
#   2. Warm serving: `segue serve` over the directory and `segue serve --library s3://...
#      --cache-dir DIR` over the bucket, both warmed (every segment fetched once), then wrk on
#      loopback over the same rotating list of segment URLs (compare_nginx.sh's Lua script), in
#      rounds alternating the two; median req/s and the ratio bucket/local (target >= 0.95).
#   3. Cold misses: a fresh origin of each kind (the bucket one with an empty --cache-dir), every
#      distinct segment fetched once, in order, on one keep-alive connection with curl; p50 and
#      p99 of curl's time_total.
# Prints one summary table at the end. Servers are pinned to cores 0-1 as in compare_nginx.sh.
#
# A benchmark, not a test: .ci/run does not run it. Needs wrk, curl, moto_server (`python3 -m
# pip install -r tests/peers/requirements-s3.txt`) and, without the default input, sox or ffmpeg:
#   apt-get install wrk ffmpeg
# Usage: bash benches/compare_bucket.sh [SECONDS_PER_RUN]   (default 10)
# Env: SEGUE_BENCH_DIR (work dir, default /tmp/segue-bench-bucket), BENCH_INPUT (the file to
#      ingest), BENCH_INGEST_RUNS (per library kind, default 3), BENCH_ROUNDS (wrk rounds, default
#      3), BENCH_CONNECTIONS (default 64), SEGUE_BIN (a segue binary instead of building one).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
seconds=${1:-10}
work=${SEGUE_BENCH_DIR:-/tmp/segue-bench-bucket}
ingest_runs=${BENCH_INGEST_RUNS:-3}
rounds=${BENCH_ROUNDS:-3}
connections=${BENCH_CONNECTIONS:-64}
for tool in wrk curl moto_server taskset python3; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install wrk curl; python3 -m pip install -r tests/peers/requirements-s3.txt" >&2
    exit 2
  }
done

if [ -n "${SEGUE_BIN:-}" ]; then
  segue=$SEGUE_BIN
else
  cargo build --release --quiet
  segue=$PWD/target/release/segue
fi
rm -rf "$work"; mkdir -p "$work"
# A bucket library keeps its catalog under XDG_CACHE_HOME unless told otherwise: keep it here.
export XDG_CACHE_HOME=$work/xdg-cache

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- the input -----------------------------------------------------------------------------
input=${BENCH_INPUT:-/tmp/segue-bench/5min-music.flac}
if [ ! -f "$input" ]; then
  input=$work/5min-music.flac
  # Music-like: plucked notes amplitude-modulated by noise, with a beat, so the encoder has work.
  if command -v sox >/dev/null; then
    sox -n -r 44100 -c 2 -b 16 "$input" synth 300 pluck C3 pluck G3 synth 300 pinknoise amod 0.3 \
      tremolo 2 40
  else
    ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi \
      -i "aevalsrc='0.3*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*2*t))+0.1*sin(2*PI*277*t)+0.05*(random(0)-0.5)|0.3*sin(2*PI*330*t)+0.05*(random(1)-0.5)':s=44100:d=300" \
      -c:a flac "$input"
  fi
fi
echo "# input: $input ($(du -h "$input" | cut -f1)); segue: $("$segue" --version 2>/dev/null || git rev-parse --short HEAD)"

# --- the bucket: moto on a free loopback port ------------------------------------------------
s3_port=$(free_port)
moto_server -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
pids+=($!)
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=segue-bench AWS_SECRET_ACCESS_KEY=segue-bench
bucket=segue-bench
for _ in $(seq 300); do curl -fsS -o /dev/null -X PUT "$AWS_ENDPOINT_URL/$bucket" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "$AWS_ENDPOINT_URL/$bucket" || { echo "moto did not start:" >&2; cat "$work/moto.log" >&2; exit 1; }
echo "# moto $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo "?") at $AWS_ENDPOINT_URL, bucket $bucket"

# --- 1. ingest: interleaved runs, each into a fresh library ----------------------------------
ingest() { # kind run -> wall seconds; checks the JSON line says a new track was written
  local kind=$1 run=$2 library start end line
  if [ "$kind" = local ]; then library=$work/ingest/local-$run; else library=s3://$bucket/ingest-$run; fi
  start=$(date +%s.%N)
  line=$("$segue" ingest --json --library "$library" "$input" 2>"$work/ingest-$kind-$run.err") || true
  end=$(date +%s.%N)
  python3 - "$line" <<'PY' || { echo "ingest $kind $run failed: $line" >&2; cat "$work/ingest-$kind-$run.err" >&2; exit 1; }
import json, sys
r = json.loads(sys.argv[1])
sys.exit(0 if r["status"] == "ok" and not r["existing"] else 1)
PY
  python3 -c "print(f'{$end - $start:.3f}')"
}
: >"$work/ingest.txt"
echo "# ingest: $ingest_runs runs each, alternating which goes first"
for run in $(seq "$ingest_runs"); do
  order="local bucket"; [ $((run % 2)) = 0 ] && order="bucket local"
  for kind in $order; do
    secs=$(ingest "$kind" "$run")
    echo "$kind $secs" | tee -a "$work/ingest.txt" >&2
  done
done
# The libraries served below: the first run of each kind.
local_lib=$work/ingest/local-1
bucket_lib=s3://$bucket/ingest-1
(cd "$local_lib/tracks" && find . -name '*.m4s' | sed 's|^\./|/media/|' | sort -V) >"$work/paths.txt"
# The same keys in the bucket, object for object.
python3 - "$AWS_ENDPOINT_URL/$bucket" "ingest-1/tracks/" "$work/paths.txt" <<'PY'
import re, sys, urllib.parse, urllib.request
endpoint, prefix, paths = sys.argv[1], sys.argv[2], sys.argv[3]
keys, token = set(), None
while True:
    q = {"list-type": "2", "prefix": prefix}
    if token: q["continuation-token"] = token
    body = urllib.request.urlopen(f"{endpoint}?{urllib.parse.urlencode(q)}").read().decode()
    keys |= {k[len(prefix):] for k in re.findall(r"<Key>([^<]+)</Key>", body)}
    m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
    if not m: break
    token = m.group(1)
want = {p[len("/media/"):] for p in open(paths).read().split()}
missing = want - keys
if missing:
    sys.exit(f"{len(missing)} segments of the local library are not in the bucket, e.g. {sorted(missing)[0]}")
PY
echo "# $(wc -l <"$work/paths.txt") segment URLs, $(du -sh "$local_lib/tracks" | cut -f1) on disk"

# --- origins ----------------------------------------------------------------------------------
start_origin() { # name library [serve flags...] -> sets $url; the pid joins $pids
  local name=$1 library=$2; shift 2
  RUST_LOG=warn taskset -c 0-1 "$segue" serve --library "$library" --addr 127.0.0.1:0 "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 300); do grep -q '^listening on ' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^listening on //p' "$work/$name.out")
  [ -n "$url" ] || { echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1; }
}
stop_origin() { # pid
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# curl config fetching every segment once, in order, on one keep-alive connection.
curl_config() { # base_url -> config on stdout
  sed -e "s|^|url = \"$1|" -e 's|$|"\noutput = "/dev/null"|' "$work/paths.txt"
}
fetch_all() { # base_url -> one "http_code time_total" line per segment
  curl -sS -K <(curl_config "$1") -w '%{http_code} %{time_total}\n'
}
check_fetch() { # name file: every response a 200
  local bad
  bad=$(awk '$1 != 200' "$2" | wc -l)
  [ "$bad" = 0 ] || { echo "$1: $bad responses were not 200 ($(awk '$1 != 200 {print $1}' "$2" | sort | uniq -c | tr '\n' ' '))" >&2; exit 1; }
}

# --- 3. cold misses first: fresh processes, empty caches --------------------------------------
echo "# cold misses: each segment once from a fresh origin (the bucket one with an empty --cache-dir)"
start_origin local-cold "$local_lib"; local_cold_pid=${pids[-1]}
fetch_all "$url" >"$work/cold-local.txt"; stop_origin "$local_cold_pid"
check_fetch "local cold" "$work/cold-local.txt"
rm -rf "$work/cache-cold"
start_origin bucket-cold "$bucket_lib" --cache-dir "$work/cache-cold"; bucket_cold_pid=${pids[-1]}
fetch_all "$url" >"$work/cold-bucket.txt"; stop_origin "$bucket_cold_pid"
check_fetch "bucket cold" "$work/cold-bucket.txt"

# --- 2. warm serving ----------------------------------------------------------------------------
start_origin local "$local_lib"; local_url=$url
start_origin bucket "$bucket_lib" --cache-dir "$work/cache-warm"; bucket_url=$url
probe=$(sed -n '2p' "$work/paths.txt")
cmp <(curl -fsS "$local_url$probe") <(curl -fsS "$bucket_url$probe") \
  || { echo "the two origins disagree on $probe" >&2; exit 1; }
fetch_all "$local_url" >"$work/warm-local.txt"; check_fetch "local warm-up" "$work/warm-local.txt"
fetch_all "$bucket_url" >"$work/warm-bucket.txt"; check_fetch "bucket warm-up" "$work/warm-bucket.txt"

cat >"$work/rotate.lua" <<'LUA'
-- Cycles through the paths in args[1]; each thread starts at its own offset (compare_nginx.sh's).
local paths, counter = {}, 0
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  counter = ((id or 0) * 7919) % #paths
end
function request()
  counter = counter % #paths + 1
  return wrk.format("GET", paths[counter])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%d non2xx=%d mbytes=%.1f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, e.status, summary.bytes / 1e6))
end
LUA
wrk_threads=$(nproc); [ "$wrk_threads" -gt 2 ] && wrk_threads=2
run_wrk() { # url conns seconds -> RESULT line
  taskset -c 0-1 wrk -t"$wrk_threads" -c"$2" -d"$3"s --timeout 10s -s "$work/rotate.lua" "$1" \
    -- "$work/paths.txt" | grep '^RESULT'
}
echo "# warm-up: every segment fetched once from each, then 3 s of wrk each"
run_wrk "$local_url" "$connections" 3 >/dev/null
run_wrk "$bucket_url" "$connections" 3 >/dev/null
bucket_requests_before=$(grep -c '"GET /[^ ?]* HTTP' "$work/moto.log" || true)
: >"$work/wrk.txt"
for round in $(seq "$rounds"); do
  order="local bucket"; [ $((round % 2)) = 0 ] && order="bucket local"
  for kind in $order; do
    u=$local_url; [ "$kind" = bucket ] && u=$bucket_url
    line=$(run_wrk "$u" "$connections" "$seconds")
    echo "$kind $connections $line" | tee -a "$work/wrk.txt" >&2
  done
done
bucket_requests_during=$(( $(grep -c '"GET /[^ ?]* HTTP' "$work/moto.log" || true) - bucket_requests_before ))

# --- summary ----------------------------------------------------------------------------------
echo
echo "ingest of $(basename "$input"): $ingest_runs runs each; wrk: $rounds rounds of $seconds s at $connections connections," \
  "$wrk_threads threads, over $(wc -l <"$work/paths.txt") segments; object GETs from the bucket during the wrk rounds (listings not counted): $bucket_requests_during"
python3 - "$work" <<'PY'
import re, statistics, sys
work = sys.argv[1]
ingest = {}
for line in open(f"{work}/ingest.txt"):
    kind, secs = line.split()
    ingest.setdefault(kind, []).append(float(secs))
wrk = {}
for line in open(f"{work}/wrk.txt"):
    kind, _, rest = line.split(" ", 2)
    wrk.setdefault(kind, []).append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", rest)})
def cold(kind):
    times = sorted(float(l.split()[1]) * 1000 for l in open(f"{work}/cold-{kind}.txt"))
    pct = lambda p: times[min(len(times) - 1, round(p / 100 * (len(times) - 1)))]
    return pct(50), pct(99)
med = statistics.median
li, bi = med(ingest["local"]), med(ingest["bucket"])
lr, br = med(r["rps"] for r in wrk["local"]), med(r["rps"] for r in wrk["bucket"])
ratios = [b["rps"] / l["rps"] for l, b in zip(wrk["local"], wrk["bucket"])]
errors = {k: int(sum(r["errors"] + r["non2xx"] for r in v)) for k, v in wrk.items()}
(lc50, lc99), (bc50, bc99) = cold("local"), cold("bucket")
print("| figure | local directory | bucket (moto, loopback) | bucket/local | target |")
print("|---|---:|---:|---:|---:|")
print(f"| ingest wall time, median (runs) | {li:.2f} s ({' '.join(f'{x:.2f}' for x in ingest['local'])}) | "
      f"{bi:.2f} s ({' '.join(f'{x:.2f}' for x in ingest['bucket'])}) | {bi / li:.2f} | <= 1.1 |")
print(f"| warm segments, req/s, median (ratios by round: {' '.join(f'{r:.2f}' for r in ratios)}) | {lr:.0f} | {br:.0f} | "
      f"{med(ratios):.2f} | >= 0.95 |")
print(f"| warm segments, p99 ms, median | {med(r['p99_ms'] for r in wrk['local']):.2f} | "
      f"{med(r['p99_ms'] for r in wrk['bucket']):.2f} | | |")
print(f"| wrk errors + non-2xx | {errors['local']} | {errors['bucket']} | | 0 |")
print(f"| cold miss p50 ms | {lc50:.2f} | {bc50:.2f} | | |")
print(f"| cold miss p99 ms | {lc99:.2f} | {bc99:.2f} | | |")
PY
