#!/usr/bin/env bash
# Regenerates segue's bundled sample audio into the directory this script lives in.
#
# Everything is synthesized here: sox makes the notes, noise and mixes, espeak-ng
# speaks one sentence, ffmpeg encodes and tags. Nothing is downloaded. Tools used:
# Debian's sox (14.4.2), espeak-ng (1.51) and ffmpeg (5.1), see README.md.
#
# Reproducibility: every sox call runs with -R (fixed seeds for noise and dither),
# espeak-ng is deterministic, the cover image uses fixed gradient colors and seed,
# and every ffmpeg call uses -fflags +bitexact -flags:a +bitexact -map_metadata -1
# with explicit -metadata, so no encoder versions or timestamps are embedded.
# Running the script twice produces byte-identical files with the same tool versions.
#
# Usage: media/samples/make-samples.sh   (no arguments; overwrites the samples)

set -euo pipefail
export LC_ALL=C

OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in sox espeak-ng ffmpeg; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

SOX=(sox -R --no-show-progress)
FF=(ffmpeg -nostdin -hide_banner -loglevel error -y)
BITEXACT=(-fflags +bitexact -flags:a +bitexact -map_metadata -1)
TOTAL=7 # tracks on the "Segue Demo" album

# tags TRACK TITLE: sets the TAGS array used by every encode.
tags() {
    TAGS=(
        -metadata "title=$2"
        -metadata "artist=segue samples"
        -metadata "album_artist=segue samples"
        -metadata "album=Segue Demo"
        -metadata "track=$1/$TOTAL"
        -metadata "date=2026"
    )
}

# Intermediate files are mono or stereo 32-bit float WAV at the piece's rate.
RATE=44100
F32=(-b 32 -e floating-point)

# gen OUT SOX-ARGS...: renders `sox -r RATE -n OUT SOX-ARGS` (mono, synthesized at RATE:
# without -r before -n sox would synthesize at 48 kHz and resample) unless OUT exists,
# so repeated notes are synthesized once.
gen() {
    local out=$1
    shift
    [[ -e $out ]] || "${SOX[@]}" -r "$RATE" -c 1 -n "${F32[@]}" "$out" "$@"
}

# seq_voice OUT FILES...: concatenates note files into one voice track, normalized to
# -10 dBFS peak so that mixing gains are relative and the mixes keep headroom.
seq_voice() {
    local out=$1
    shift
    "${SOX[@]}" "$@" "${F32[@]}" "$out" gain -n -10
}

# oct NOTE K: the note K octaves higher (C4 2 -> C6); its frequency is exactly 2^K times.
oct() {
    local n=$1 k=$2
    echo "${n%[0-9]}$(( ${n: -1} + k ))"
}

# Beat-level building blocks ------------------------------------------------------

# pluck NOTE DUR: a plucked string (sox's Karplus-Strong "pluck"), low-passed to a
# mellow nylon/harp tone and decaying to silence so notes butt together click-free.
pluck() {
    local f="$D/pluck_${1}_$2.wav"
    gen "$f" synth "$2" pluck "$1" vol 0.5 lowpass 2500 lowpass 2500 fade l 0.003 "$2" "$2"
    echo "$f"
}

# epiano NOTE DUR: sine plus octave with a fast logarithmic decay (bell / e-piano).
epiano() {
    local f="$D/ep_${1}_$2.wav"
    gen "$f" synth "$2" sine "$1" sine mix "$(oct "$1" 1)" fade l 0.004 "$2" "$2" lowpass 4000
    echo "$f"
}

# marimba NOTE DUR: sine plus the double octave, very fast decay.
marimba() {
    local f="$D/mar_${1}_$2.wav"
    gen "$f" synth "$2" sine "$1" sine mix "$(oct "$1" 2)" fade l 0.002 "$2" "$2" \
        fade p 0 "$2" 0.01
    echo "$f"
}

# bass NOTE DUR: soft triangle bass, low-passed, with a short attack and release.
bass() {
    local f="$D/bass_${1}_$2.wav"
    gen "$f" synth "$2" triangle "$1" sine mix "$1" lowpass 500 fade t 0.01 "$2" 0.12
    echo "$f"
}

# pad DUR NOTES...: a soft chord (triangles, low-passed) with slow attack and release.
pad() {
    local dur=$1
    shift
    local f="$D/pad_$(IFS=_; echo "$*")_$dur.wav" args=() n first=1
    for n in "$@"; do
        if ((first)); then args+=(triangle "$n"); first=0; else args+=(triangle mix "$n"); fi
    done
    gen "$f" synth "$dur" "${args[@]}" lowpass 1200 tremolo 0.5 15 fade q 0.35 "$dur" 0.35
    echo "$f"
}

# hat DUR: a short high-passed noise burst (30 ms) followed by silence up to DUR.
hat() {
    local f="$D/hat_$1.wav"
    gen "$f" synth 0.03 noise vol 0.5 highpass 7000 fade p 0 0.03 0.027 \
        pad 0 "$(awk -v d="$1" 'BEGIN{print d-0.03}')"
    echo "$f"
}

# stereo IN.wav LEFT RIGHT: writes IN.st.wav, the mono IN placed with those gains.
stereo() {
    "${SOX[@]}" -M "$1" "$1" "${F32[@]}" "${1%.wav}.st.wav" remix 1v"$2" 2v"$3"
}

# rest DUR: silence.
rest() {
    local f="$D/rest_$1.wav"
    gen "$f" trim 0 "$1"
    echo "$f"
}

# =================================================================================
# 1+2. "Gapless" (C major, 120 BPM, 10 bars = 20.0 s), one render split at 10.0 s.
# =================================================================================
piece_gapless() {
    RATE=44100
    D="$TMP/gapless"
    mkdir -p "$D"
    local -a arp=() bas=() pads=() hats=()
    # bar chord: pad notes | arpeggio tones (low to high) | bass root | bass fifth
    local -a bars=(
        "C3 E3 G3 C4|C4 E4 G4 C5|C2|G2"
        "B2 D3 G3 B3|B3 D4 G4 B4|G1|D2"
        "A2 C3 E3 A3|A3 C4 E4 A4|A1|E2"
        "A2 C3 F3 A3|A3 C4 F4 A4|F1|C2"
        "C3 E3 G3 B3|C4 E4 G4 B4|C2|G2"
        "C3 E3 G3 B3|E4 G4 B4 E5|C2|G2"
        "A2 C3 F3 A3|A3 C4 F4 A4|F1|C2"
        "B2 D3 G3 B3|B3 D4 G4 B4|G1|D2"
        "C3 E3 G3 C4|C4 E4 G4 C5|C2|G2"
        "C3 E3 G3 C4|C4 E4 G4 C5|C2|G2"
    )
    local i padn arpn root fifth
    for i in "${!bars[@]}"; do
        IFS='|' read -r padn arpn root fifth <<<"${bars[i]}"
        local -a t
        read -ra t <<<"$arpn"
        # Pads: bars 5-6 (across the 10.0 s split) and 9-10 are one held 4 s chord.
        case $i in
            4 | 8) pads+=("$(pad 4 $padn)") ;;
            5 | 9) ;;
            *) pads+=("$(pad 2 $padn)") ;;
        esac
        if ((i == 9)); then
            # Final bar: one ringing note per beat, then the fade-out does the rest.
            arp+=("$(pluck "${t[3]}" 1)" "$(pluck "${t[2]}" 1)")
            bas+=("$(bass "$root" 2)")
            hats+=("$(rest 2)")
            continue
        fi
        local k
        for k in 0 1 2 3 1 2 3 2; do arp+=("$(pluck "${t[k]}" 0.25)"); done
        bas+=("$(bass "$root" 1)" "$(bass "$root" 0.5)" "$(bass "$fifth" 0.5)")
        for k in 1 2 3 4; do hats+=("$(rest 0.25)" "$(hat 0.25)"); done # off-beats
    done
    seq_voice "$D/arp.wav" "${arp[@]}"
    seq_voice "$D/bass.wav" "${bas[@]}"
    seq_voice "$D/pad.wav" "${pads[@]}"
    seq_voice "$D/hat.wav" "${hats[@]}"
    # Place the voices in the stereo field (arpeggio left of centre, hats right), put
    # the tonal voices in a room, add the dry hats, then fades and level.
    stereo "$D/arp.wav" 0.75 0.45
    stereo "$D/bass.wav" 0.6 0.6
    stereo "$D/pad.wav" 0.5 0.5
    stereo "$D/hat.wav" 0.3 0.6
    "${SOX[@]}" -m -v 1.4 "$D/arp.st.wav" -v 0.17 "$D/bass.st.wav" -v 0.18 "$D/pad.st.wav" \
        "${F32[@]}" "$D/room.wav" gain -n -8 reverb 35 50 70 0 8 trim 0 882000s
    "${SOX[@]}" -m -v 1 "$D/room.wav" -v 0.35 "$D/hat.st.wav" "${F32[@]}" "$D/mix.wav" \
        fade q 0.3 20 3.5 gain -n -1
    # 16-bit (with repeatable TPDF dither) once, then cut at exactly 10.0 s.
    "${SOX[@]}" "$D/mix.wav" -b 16 "$D/mix16.wav"
    "${SOX[@]}" "$D/mix16.wav" "$D/part1.wav" trim 0 441000s
    "${SOX[@]}" "$D/mix16.wav" "$D/part2.wav" trim 441000s

    tags 1 "Gapless, Part One"
    "${FF[@]}" -i "$D/part1.wav" "${BITEXACT[@]}" -map 0:a -c:a flac -sample_fmt s16 \
        -compression_level 10 "${TAGS[@]}" "$OUT/01-gapless-part-one.flac"
    tags 2 "Gapless, Part Two"
    "${FF[@]}" -i "$D/part2.wav" "${BITEXACT[@]}" -map 0:a -c:a flac -sample_fmt s16 \
        -compression_level 10 "${TAGS[@]}" "$OUT/02-gapless-part-two.flac"
}

# =================================================================================
# 3. Spoken introduction over a quiet pad, MP3 with ID3v2 tags and a PNG cover.
# =================================================================================
piece_spoken() {
    RATE=44100
    D="$TMP/spoken"
    mkdir -p "$D"
    espeak-ng -v en-us -s 155 -p 45 -w "$D/voice22k.wav" \
        "This is segue, an audio first streaming server. Every track, gapless, on any device."
    # 0.6 s lead-in, resampled to 44.1 kHz, gently compressed and level-matched.
    "${SOX[@]}" "$D/voice22k.wav" -r "$RATE" "${F32[@]}" "$D/voice.wav" \
        rate -v highpass 80 gain -n -6 \
        compand 0.003,0.1 6:-70,-70,-50,-30,-30,-16,0,-8 0 -40 0.003 \
        pad 0.6 0 gain -n -3
    local len
    len=$(soxi -s "$D/voice.wav")
    local total=$((RATE * 8)) # 8.0 s
    ((len < total - RATE / 2)) || { echo "speech too long: $len samples" >&2; exit 1; }
    # A quiet Fmaj9-ish pad, different tones left and right.
    local l r
    l=$(pad 8 F2 C3 A3 E4)
    r=$(pad 8 F2 A3 C4 G4)
    "${SOX[@]}" -M "$l" "$r" "${F32[@]}" "$D/pad2.wav" gain -n -8 \
        reverb 50 50 90 100 0 fade q 1 8 2.5 gain -n -24
    "${SOX[@]}" -M "$D/voice.wav" "$D/voice.wav" "${F32[@]}" "$D/voice2.wav" \
        pad 0 "$((total - len))s"
    "${SOX[@]}" -m -v 1 "$D/voice2.wav" -v 1 "$D/pad2.wav" -b 16 "$D/spoken.wav" \
        trim 0 "${total}s" gain -n -1

    # 64x64 cover: a fixed two-color diagonal gradient (explicit colors and seed).
    "${FF[@]}" -f lavfi \
        -i "gradients=s=64x64:c0=0x1d3557:c1=0xe76f51:x0=0:y0=0:x1=63:y1=63:nb_colors=2:seed=1:rate=1" \
        -fflags +bitexact -flags +bitexact -map_metadata -1 \
        -frames:v 1 -pix_fmt rgb24 -c:v png "$D/cover.png"

    tags 3 "Spoken Introduction"
    "${FF[@]}" -i "$D/spoken.wav" -i "$D/cover.png" "${BITEXACT[@]}" -flags:v +bitexact \
        -map 0:a -map 1:v -c:a libmp3lame -b:a 128k -ar 44100 -c:v copy \
        -disposition:v:0 attached_pic -metadata:s:v title="Album cover" \
        -metadata:s:v comment="Cover (front)" -id3v2_version 4 -write_xing 1 \
        "${TAGS[@]}" "$OUT/03-spoken-introduction.mp3"
}

# =================================================================================
# 4. "Vorbis Nocturne" (D minor, 96 BPM, 4 bars = 10.0 s) at 48 kHz, Ogg Vorbis q4.
# =================================================================================
piece_vorbis() {
    RATE=48000
    D="$TMP/vorbis"
    mkdir -p "$D"
    local q=0.625 # one beat in seconds (30000 samples at 48 kHz)
    local -a mel=() bas=() pads=()
    # Melody: NOTE:BEATS, four beats per bar.
    local m
    for m in A4:1 D5:1 E5:1 F5:1 D5:2 C5:1 A4:1 C5:1 A4:1 F4:1 G4:1 E4:3 r:1; do
        local n=${m%%:*} beats=${m##*:}
        local dur
        dur=$(awk -v b="$beats" -v q="$q" 'BEGIN{print b*q}')
        if [[ $n == r ]]; then mel+=("$(rest "$dur")"); else mel+=("$(epiano "$n" "$dur")"); fi
    done
    pads+=("$(pad 2.5 D3 F3 A3 C4 E4)" "$(pad 2.5 Bb2 D3 F3 A3)" \
        "$(pad 2.5 F3 A3 C4 E4)" "$(pad 2.5 C3 E3 G3 A3)")
    local r
    for r in D2:A2 Bb1:F2 F2:C3 C2:G2; do
        bas+=("$(bass "${r%%:*}" 1.875)" "$(bass "${r##*:}" 0.625)")
    done
    seq_voice "$D/mel.wav" "${mel[@]}"
    seq_voice "$D/bass.wav" "${bas[@]}"
    seq_voice "$D/pad.wav" "${pads[@]}"
    stereo "$D/bass.wav" 1 1
    # Melody with a dotted-eighth echo, slightly right; pad chorused in stereo.
    "${SOX[@]}" -M "$D/mel.wav" "$D/mel.wav" "${F32[@]}" "$D/mel2.wav" remix 1v0.5 2v0.7 \
        echo 0.8 0.8 468.75 0.3 trim 0 480000s
    "${SOX[@]}" -M "$D/pad.wav" "$D/pad.wav" "${F32[@]}" "$D/pad2.wav" \
        chorus 0.7 0.9 55 0.4 0.25 2 -t trim 0 480000s
    "${SOX[@]}" -m -v 1.2 "$D/mel2.wav" -v 0.085 "$D/bass.st.wav" -v 0.115 "$D/pad2.wav" \
        "${F32[@]}" "$D/mix.wav" gain -n -8 reverb 50 40 90 100 15 trim 0 480000s \
        fade q 0.2 10 2.5 gain -n -1

    tags 4 "Vorbis Nocturne"
    "${FF[@]}" -i "$D/mix.wav" "${BITEXACT[@]}" -map 0:a -c:a libvorbis -q:a 4 -ar 48000 \
        "${TAGS[@]}" "$OUT/04-vorbis-nocturne.ogg"
}

# =================================================================================
# 5. Hi-res test tones: 24-bit 96 kHz stereo FLAC (tones, a sweep to 40 kHz, a chord).
# =================================================================================
piece_hires() {
    RATE=96000
    D="$TMP/hires"
    mkdir -p "$D"
    # 0-1 s: A4 left, E5 right. 1-3 s: logarithmic sweep 20 Hz -> 40 kHz in both
    # channels (above the 44.1/48 kHz Nyquist, so a resampler must filter it out).
    # 3-4 s: a C major chord, C4+G4 left and E4+C5 right.
    gen "$D/toneL.wav" synth 1 sine A4 fade h 0.05 1 0.3
    gen "$D/toneR.wav" synth 1 sine E5 fade h 0.05 1 0.3
    gen "$D/sweep.wav" synth 2 sine 20/40000 fade h 0.05 2 0.05
    gen "$D/chordL.wav" synth 1 sine C4 sine mix G4 fade h 0.02 1 0.8
    gen "$D/chordR.wav" synth 1 sine E4 sine mix C5 fade h 0.02 1 0.8
    seq_voice "$D/L.wav" "$D/toneL.wav" "$D/sweep.wav" "$D/chordL.wav"
    seq_voice "$D/R.wav" "$D/toneR.wav" "$D/sweep.wav" "$D/chordR.wav"
    # Peak -6 dBFS, written as 24-bit PCM (no dither needed from 32-bit float).
    "${SOX[@]}" -M "$D/L.wav" "$D/R.wav" -b 24 "$D/hires.wav" gain -n -6

    tags 5 "Hi-Res Tones and Sweep"
    "${FF[@]}" -i "$D/hires.wav" "${BITEXACT[@]}" -map 0:a -c:a flac -compression_level 12 \
        "${TAGS[@]}" "$OUT/05-hires-tones-24-96.flac"
}

# =================================================================================
# 6. A tiny 2 s chime as 16-bit 44.1 kHz stereo WAV (RIFF INFO tags).
# =================================================================================
piece_chime() {
    RATE=44100
    D="$TMP/chime"
    mkdir -p "$D"
    seq_voice "$D/c1.wav" "$(epiano E5 0.5)" "$(rest 1.5)"
    seq_voice "$D/c2.wav" "$(rest 0.5)" "$(epiano C5 1.5)"
    "${SOX[@]}" -M "$D/c1.wav" "$D/c2.wav" "${F32[@]}" "$D/st.wav" remix 1v0.8,2v0.35 1v0.35,2v0.8
    "${SOX[@]}" "$D/st.wav" -b 16 "$D/chime.wav" gain -n -8 reverb 40 50 60 100 0 \
        trim 0 88200s fade q 0 2 0.3 gain -n -1

    tags 6 "Two-Note Chime"
    "${FF[@]}" -i "$D/chime.wav" "${BITEXACT[@]}" -map 0:a -c:a pcm_s16le \
        "${TAGS[@]}" "$OUT/06-two-note-chime.wav"
}

# =================================================================================
# 7. "Mono Marimba" (G major pentatonic, 120 BPM, 4 bars = 8.0 s), mono AAC-LC in M4A.
# =================================================================================
piece_mono() {
    RATE=44100
    D="$TMP/mono"
    mkdir -p "$D"
    local -a mel=() bas=()
    local m
    for m in D5 B4 G4 B4 D5 E5 D5 B4 E5 D5 B4 G4 E4 G4 B4 D5 E5 G5 E5 D5 E5 D5 B4 A4; do
        mel+=("$(marimba "$m" 0.25)")
    done
    mel+=("$(marimba A4 0.25)" "$(marimba B4 0.25)" "$(marimba D5 0.5)" "$(marimba G4 1)")
    local r
    for r in G2 E2 C2 D2; do
        bas+=("$(bass "$r" 0.5)" "$(bass "$r" 0.5)" "$(bass "$(oct "$r" 1)" 0.5)" \
            "$(bass "$r" 0.5)")
    done
    seq_voice "$D/mel.wav" "${mel[@]}"
    seq_voice "$D/bass.wav" "${bas[@]}"
    seq_voice "$D/pad.wav" "$(pad 2 G3 B3 D4)" "$(pad 2 E3 G3 B3)" "$(pad 2 C3 E3 G3)" \
        "$(pad 2 D3 F#3 A3)"
    "${SOX[@]}" -m -v 0.9 "$D/mel.wav" -v 0.13 "$D/bass.wav" -v 0.085 "$D/pad.wav" \
        "${F32[@]}" "$D/mix.wav" gain -n -8 reverb 30 50 50 0 5 trim 0 352800s \
        fade q 0.01 8 1.5 gain -n -1

    tags 7 "Mono Marimba"
    "${FF[@]}" -i "$D/mix.wav" "${BITEXACT[@]}" -map 0:a -c:a aac -profile:a aac_low -b:a 128k \
        -ac 1 -ar 44100 -movflags +faststart "${TAGS[@]}" "$OUT/07-mono-marimba.m4a"
}

piece_gapless
piece_spoken
piece_vorbis
piece_hires
piece_chime
piece_mono
