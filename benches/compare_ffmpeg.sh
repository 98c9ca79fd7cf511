#!/usr/bin/env bash
# Ingest speed and memory, segue against ffmpeg doing the same job on the same machine, in the
# same run: decode a 5-minute 44.1 kHz stereo FLAC of music once, encode an AAC ladder of 64,
# 128 and 256 kbit/s, write HLS fMP4 with 4 s segments. segue runs with fdk-aac's afterburner on (its
# default, best quality); ffmpeg uses its native AAC encoder (Debian's ffmpeg has no libfdk_aac).
# Then peak memory for a 5-minute and a 60-minute file (memory must stay flat with length).
#
# Usage: bash benches/compare_ffmpeg.sh [RUNS]   (needs ffmpeg and GNU time: apt-get install time)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=${SEGUE_BENCH_DIR:-/tmp/segue-bench}
mkdir -p "$work"
cargo build --release --quiet
segue=$PWD/target/release/segue

# The input is music: the bundled two-part "Gapless" render (media/samples: arpeggio, bass,
# pad, hi-hat, reverb), looped to length. A synthetic tone signal (what this script used first)
# is far easier for an AAC encoder than music: ffmpeg took 19 s on it against 37 s here, and
# the fdk-aac encoders 11.5-13.5 s of CPU against 13-15 s. The tones' figures are kept in README.
pair="$work/pair.wav"
[ -f "$pair" ] || ffmpeg -hide_banner -loglevel error -nostdin -y \
  -i media/samples/01-gapless-part-one.flac -i media/samples/02-gapless-part-two.flac \
  -filter_complex "[0:a][1:a]concat=n=2:v=0:a=1[a]" -map "[a]" "$pair"
for minutes in 5 60; do
  f="$work/${minutes}min-music.flac"
  [ -f "$f" ] || ffmpeg -hide_banner -loglevel error -nostdin -y -stream_loop -1 -i "$pair" \
    -t $((minutes * 60)) -c:a flac -sample_fmt s16 "$f"
done

measure() { # label, command...: prints "label wall_s user_s sys_s maxrss_kb"
  local label=$1; shift
  /usr/bin/time -o "$work/time.txt" -f "%e %U %S %M" "$@" >/dev/null 2>&1
  echo "$label $(tail -1 "$work/time.txt")"
}

echo "# 5-minute FLAC, 3-rung ladder, $runs runs each (wall s, user s, sys s, peak RSS KiB)"
for i in $(seq "$runs"); do
  rm -rf "$work/ff" "$work/lib"; mkdir -p "$work/ff"
  measure ffmpeg ffmpeg -nostdin -y -i "$work/5min-music.flac" -map 0:a -map 0:a -map 0:a -c:a aac \
    -b:a:0 64k -b:a:1 128k -b:a:2 256k -f hls -hls_time 4 -hls_playlist_type vod \
    -hls_segment_type fmp4 -var_stream_map "a:0 a:1 a:2" -master_pl_name master.m3u8 \
    -hls_segment_filename "$work/ff/v%v/seg%d.m4s" "$work/ff/v%v/media.m3u8"
  measure segue "$segue" ingest --library "$work/lib" "$work/5min-music.flac"
done | tee "$work/speed.txt"

awk '{ w[$1]+=$2; n[$1]++ } END {
  fw=w["ffmpeg"]/n["ffmpeg"]; sw=w["segue"]/n["segue"];
  printf "mean wall: ffmpeg %.2f s, segue %.2f s, ratio ffmpeg/segue %.2fx\n", fw, sw, fw/sw }' "$work/speed.txt"

echo "# per-stage CPU of one segue run (thread CPU time) against its wall time on 2 cores"
rm -rf "$work/lib"
start=$(date +%s.%N)
RUST_LOG=segue=debug "$segue" ingest --library "$work/lib" "$work/5min-music.flac" 2>"$work/stages.log" >/dev/null
end=$(date +%s.%N)
grep "stage CPU time" "$work/stages.log" | sed 's/\x1b\[[0-9;]*m//g' | tee "$work/stages.txt"
python3 - "$work/stages.txt" "$start" "$end" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
wall = float(sys.argv[3]) - float(sys.argv[2])
decode = float(re.search(r"decode_resample_cpu_s=([\d.]+)", text).group(1))
analyze = float(re.search(r"analyze_cpu_s=([\d.]+)", text).group(1))
encode = [float(x) for x in re.findall(r'"[^"]+", ([\d.]+)\)', text)]
total = decode + analyze + sum(encode)
print(f"stages CPU: decode+resample {decode:.2f} s, analyze {analyze:.2f} s, encoders {' + '.join(f'{e:.2f}' for e in encode)} s")
print(f"sum {total:.2f} s / 2 cores = {total/2:.2f} s; wall {wall:.2f} s; wall / ideal = {wall/(total/2):.2f}")
PY

echo "# peak memory by track length"
for minutes in 5 60; do
  rm -rf "$work/lib"
  measure "segue-${minutes}min" "$segue" ingest --library "$work/lib" "$work/${minutes}min-music.flac"
done | tee "$work/memory.txt"
rm -rf "$work/lib" "$work/ff"
