#!/usr/bin/env bash
# Origin speed, segue against nginx (Debian 12's 1.22, the reference static origin) on the same
# machine in the same run: wrk on loopback fetches a rotating set of media segments (every
# segment of every rendition of a generated library, each wrk connection walking the list) from
# `segue serve` and from nginx serving the same library directory with sendfile under the same
# URL shape (/media/{track_id}/{rendition}/{n}.m4s), at 64 and 256 connections, for a fixed
# duration each. Both servers are pinned to the same 2 cores; wrk gets other cores when the
# machine has them and shares those 2 otherwise (said in the output). Neither server writes an
# access log. Prints a table of medians over the rounds: requests/s, p99 latency, ratio segue/nginx.
#
# A benchmark, not a test: .ci/run does not run it. Needs nginx, wrk and ffmpeg:
#   apt-get install nginx wrk ffmpeg
# Usage: bash benches/compare_nginx.sh [SECONDS_PER_RUN]   (default 15)
# Env: SEGUE_BENCH_DIR (work dir, default /tmp/segue-bench-nginx), BENCH_TRACKS (default 8),
#      BENCH_ROUNDS (rounds alternating the two servers, default 3; the table gives medians),
#      BENCH_CONNECTIONS (default "64 256"), SEGUE_BIN (a segue binary to use instead of
#      building one).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
rounds=${BENCH_ROUNDS:-3}
work=${SEGUE_BENCH_DIR:-/tmp/segue-bench-nginx}
tracks=${BENCH_TRACKS:-8}
connections=${BENCH_CONNECTIONS:-64 256}
nginx=$(command -v nginx || echo /usr/sbin/nginx)
for tool in "$nginx" wrk ffmpeg taskset curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx wrk ffmpeg" >&2; exit 2; }
done

if [ -n "${SEGUE_BIN:-}" ]; then
  segue=$SEGUE_BIN
else
  cargo build --release --quiet
  segue=$PWD/target/release/segue
fi
mkdir -p "$work"

# --- library: $tracks distinct 60 s tracks (a different tone each, so different ids) ----------
lib=$work/library
if [ "$(find "$lib/tracks" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)" -lt "$tracks" ]; then
  rm -rf "$lib" "$work/inputs"; mkdir -p "$work/inputs"
  for i in $(seq "$tracks"); do
    f=$((180 + 37 * i))
    ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi \
      -i "aevalsrc='0.3*sin(2*PI*$f*t)*(0.6+0.4*sin(2*PI*2*t))+0.05*(random(0)-0.5)|0.3*sin(2*PI*$((f + 55))*t)+0.05*(random(1)-0.5)':s=44100:d=60" \
      -c:a flac "$work/inputs/track$i.flac"
  done
  "$segue" ingest --library "$lib" --jobs 2 "$work/inputs" >"$work/ingest.log" 2>&1
fi
(cd "$lib/tracks" && find . -name '*.m4s' | sed 's|^\./|/media/|' | sort) >"$work/paths.txt"
echo "# $(wc -l <"$work/paths.txt") segment URLs over $tracks tracks, $(du -sh "$lib/tracks" | cut -f1) on disk"

# --- cores: servers on 0-1; wrk on the others if there are any -------------------------------
ncpu=$(nproc)
server_cpus=0-1
if [ "$ncpu" -ge 4 ]; then
  wrk_cpus=2-$((ncpu - 1)); wrk_threads=2
  echo "# servers on cores $server_cpus, wrk on cores $wrk_cpus"
else
  server_cpus=0-$((ncpu > 1 ? 1 : 0)); wrk_cpus=$server_cpus; wrk_threads=$ncpu
  echo "# only $ncpu cores: servers and wrk share cores $server_cpus (wrk's load is the same for both)"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# --- segue ------------------------------------------------------------------------------------
RUST_LOG=warn taskset -c "$server_cpus" "$segue" serve --library "$lib" --addr 127.0.0.1:0 \
  >"$work/segue.out" 2>"$work/segue.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/segue.out" 2>/dev/null && break; sleep 0.1; done
segue_url=$(sed -n 's/^listening on //p' "$work/segue.out")
[ -n "$segue_url" ] || { echo "segue did not start:" >&2; cat "$work/segue.err" >&2; exit 1; }

# --- nginx, static, same files, same URLs -----------------------------------------------------
ngx=$work/nginx; rm -rf "$ngx"; mkdir -p "$ngx"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
workers=$(taskset -c "$server_cpus" nproc)
sed -e "s|@DIR@|$ngx|g" -e "s|@USER@|$user_line|" -e "s|@LISTEN@|127.0.0.1:$port|" \
  -e "s|@TRACKS@|$lib/tracks/|" -e "s|@WORKERS@|$workers|" \
  tests/peers/nginx-static.conf >"$ngx/nginx.conf"
taskset -c "$server_cpus" "$nginx" -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" &
pids+=($!)
nginx_url=http://127.0.0.1:$port
for _ in $(seq 100); do curl -fso /dev/null "$nginx_url$(head -1 "$work/paths.txt")" && break; sleep 0.1; done

# Both must serve the same bytes at the same URL before they are compared.
probe=$(sed -n '2p' "$work/paths.txt")
cmp <(curl -fsS "$segue_url$probe") <(curl -fsS "$nginx_url$probe") \
  || { echo "segue and nginx disagree on $probe" >&2; exit 1; }

# --- wrk: each connection walks the segment list from its own offset ---------------------------
cat >"$work/rotate.lua" <<'LUA'
-- Cycles through the paths in args[1]; each thread starts at its own offset.
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

run_wrk() { # url conns seconds -> RESULT line
  taskset -c "$wrk_cpus" wrk -t"$wrk_threads" -c"$2" -d"$3"s --timeout 10s -s "$work/rotate.lua" "$1" \
    -- "$work/paths.txt" | grep '^RESULT'
}

echo "# nginx: $("$nginx" -v 2>&1 | sed 's/.*: //'), segue: $("$segue" --version 2>/dev/null || echo "$(git rev-parse --short HEAD)")"
echo "# warm-up (page cache, segue's hot-file cache): 5 s each"
run_wrk "$segue_url" 64 5 >/dev/null
run_wrk "$nginx_url" 64 5 >/dev/null

: >"$work/results.txt"
# Shared machines drift (other tenants, CPU steal): rounds alternate the two servers (and which
# goes first), so drift hits both alike, and the table gives medians over the rounds.
for round in $(seq "$rounds"); do
  order="segue nginx"; [ $((round % 2)) = 0 ] && order="nginx segue"
  for c in $connections; do
    for server in $order; do
      url=$segue_url; [ "$server" = nginx ] && url=$nginx_url
      line=$(run_wrk "$url" "$c" "$seconds")
      echo "$server $c $line" | tee -a "$work/results.txt" >&2
    done
  done
done

echo
echo "wrk, $rounds rounds of ${seconds} s per server and connection count, $wrk_threads threads, rotating over $(wc -l <"$work/paths.txt") segments; medians (the ratio: of the rounds' ratios):"
python3 - "$work/results.txt" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    server, conns, rest = line.split(" ", 2)
    rows.setdefault((server, int(conns)), []).append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", rest)})
med = lambda runs, key: statistics.median(r[key] for r in runs)
print("| connections | segue req/s | nginx req/s | ratio segue/nginx | ratios by round | segue p99 ms | nginx p99 ms | errors (segue/nginx) |")
print("|---:|---:|---:|---:|---|---:|---:|---:|")
for conns in sorted({c for _, c in rows}):
    s, n = rows[("segue", conns)], rows[("nginx", conns)]
    err = lambda runs: int(sum(r["errors"] + r["non2xx"] for r in runs))
    # Each round's ratio compares runs made a few seconds apart; the median of those is the
    # ratio least moved by drift.
    ratios = [a["rps"] / b["rps"] for a, b in zip(s, n)]
    per_round = " ".join(f"{r:.2f}" for r in ratios)
    print(f"| {conns} | {med(s, 'rps'):.0f} | {med(n, 'rps'):.0f} | {statistics.median(ratios):.2f} | {per_round} | "
          f"{med(s, 'p99_ms'):.2f} | {med(n, 'p99_ms'):.2f} | {err(s)}/{err(n)} |")
PY
