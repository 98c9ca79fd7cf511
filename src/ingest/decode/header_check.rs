//! A cheap look at WAV and AIFF headers before symphonia probes the file. symphonia's WAV reader
//! multiplies header fields in `u16` (a `fmt ` chunk claiming 60000 channels overflows, a panic
//! in debug builds) and sizes buffers from them, so absurd channel counts, sample rates and
//! sample sizes are rejected here first. Only the start of the file is read. The check only
//! rejects: a header it cannot find or parse is left to symphonia, which then decides.

use std::fs::File;
use std::io::{Read, Seek};

use super::{DecodeError, DecodeOptions};

/// Bytes read from the start of the file. `fmt ` and `COMM` precede the audio data, and
/// ahead of them there is normally at most a small `JUNK`, `ds64` or `FVER` chunk.
const HEAD_BYTES: u64 = 64 << 10;

/// Widest sample accepted, in bits (64-bit float is the widest PCM there is).
const MAX_BITS_PER_SAMPLE: u16 = 64;

/// WAVE format tags symphonia decodes (PCM, MS ADPCM, IEEE float, A-law, mu-law, IMA ADPCM,
/// extensible). All have a real sample size; a compressed format may write 0 (Microsoft allows
/// it), so other tags keep their sample size unchecked and are left to symphonia.
const WAVE_FORMATS_WITH_SAMPLE_SIZE: [u16; 7] = [1, 2, 3, 6, 7, 0x11, 0xFFFE];

/// What a WAV `fmt ` or an AIFF `COMM` chunk claims.
#[derive(Debug, PartialEq, Eq)]
struct HeaderClaims {
    channels: u16,
    /// In Hz; the integer part for AIFF, which stores the rate as an 80-bit float.
    sample_rate: u64,
    /// `None` where the format gives it no meaning.
    bits_per_sample: Option<u16>,
}

/// Reads the start of `file`, rejects header values beyond `options` with
/// [`DecodeError::Limit`], and rewinds `file` for the prober.
pub(super) fn check_header(file: &mut File, options: &DecodeOptions) -> Result<(), DecodeError> {
    let mut head = Vec::new();
    file.by_ref().take(HEAD_BYTES).read_to_end(&mut head)?;
    file.rewind()?;
    read_claims(&head).map_or(Ok(()), |claims| claims.check(options))
}

impl HeaderClaims {
    /// Rejects values beyond `options`; each message names the field, its value and the range.
    fn check(&self, options: &DecodeOptions) -> Result<(), DecodeError> {
        options.check_channels(usize::from(self.channels))?;
        options.check_rate(self.sample_rate)?;
        match self.bits_per_sample {
            Some(bits) if bits == 0 || bits > MAX_BITS_PER_SAMPLE => {
                Err(DecodeError::Limit(format!(
                    "sample size {bits} bits is outside the supported range 1 to \
                     {MAX_BITS_PER_SAMPLE} bits"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The claims of a RIFF/RF64/BW64 WAVE or an AIFF/AIFC header at the start of `head`.
fn read_claims(head: &[u8]) -> Option<HeaderClaims> {
    let chunks = head.get(12..)?;
    match (head.get(..4)?, head.get(8..12)?) {
        // RF64 and BW64 keep the RIFF layout; their 64-bit sizes are in a `ds64` chunk.
        (b"RIFF" | b"RF64" | b"BW64", b"WAVE") => wave_fmt(chunks),
        (b"FORM", b"AIFF" | b"AIFC") => aiff_comm(chunks),
        _ => None,
    }
}

/// The little-endian `fmt ` chunk: format tag, channels, rate, byte rate, block align, bits.
fn wave_fmt(chunks: &[u8]) -> Option<HeaderClaims> {
    let (_, fmt) = iff_chunks(chunks, u32::from_le_bytes).find(|(id, _)| id == b"fmt ")?;
    let format = u16::from_le_bytes(field(fmt, 0)?);
    let bits = u16::from_le_bytes(field(fmt, 14)?);
    Some(HeaderClaims {
        channels: u16::from_le_bytes(field(fmt, 2)?),
        sample_rate: u32::from_le_bytes(field(fmt, 4)?).into(),
        bits_per_sample: WAVE_FORMATS_WITH_SAMPLE_SIZE
            .contains(&format)
            .then_some(bits),
    })
}

/// The big-endian `COMM` chunk: channels, frames, sample size, rate (80-bit float).
fn aiff_comm(chunks: &[u8]) -> Option<HeaderClaims> {
    let (_, comm) = iff_chunks(chunks, u32::from_be_bytes).find(|(id, _)| id == b"COMM")?;
    Some(HeaderClaims {
        channels: u16::from_be_bytes(field(comm, 0)?),
        sample_rate: extended_integer(field(comm, 8)?)?,
        bits_per_sample: Some(u16::from_be_bytes(field(comm, 6)?)),
    })
}

/// The chunks `(id, body)` of a RIFF (little-endian `size`) or IFF (big-endian) chunk list,
/// each padded to an even length. A body cut off by the end of `data` comes as far as it goes.
pub(super) fn iff_chunks(
    mut data: &[u8],
    size: fn([u8; 4]) -> u32,
) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let id = field(data, 0)?;
        let len = usize::try_from(size(field(data, 4)?)).ok()?;
        let rest = data.get(8..)?;
        let body = rest.get(..len).unwrap_or(rest);
        data = rest.get(len.saturating_add(len % 2)..).unwrap_or_default();
        Some((id, body))
    })
}

/// The `N` bytes at `at` in `data`, if it is long enough.
pub(super) fn field<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The integer part of an 80-bit IEEE 754 extended-precision number (how AIFF stores its sample
/// rate), saturating at `u64::MAX`. `None` for negative numbers, infinities and NaN: symphonia
/// turns those into a rate of 0, which it rejects itself.
fn extended_integer(bytes: [u8; 10]) -> Option<u64> {
    let [high, low, mantissa @ ..] = bytes;
    let sign_and_exponent = u16::from_be_bytes([high, low]);
    let mantissa = u64::from_be_bytes(mantissa);
    // 0x7FFF is the all-ones exponent (infinity, NaN); from 0x8000 on, the sign bit is set.
    if sign_and_exponent >= 0x7FFF {
        return None;
    }
    if mantissa == 0 {
        return Some(0);
    }
    // The mantissa carries an explicit integer bit: value = mantissa * 2^(exponent - 16383 - 63).
    let shift = i32::from(sign_and_exponent) - 16383 - 63;
    Some(match u32::try_from(shift) {
        Err(_) => mantissa.checked_shr(shift.unsigned_abs()).unwrap_or(0),
        Ok(left) if left <= mantissa.leading_zeros() => mantissa << left,
        Ok(_) => u64::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::super::SourceDecoder;
    use super::super::tests::{SINE, ffmpeg, wav_header};
    use super::*;

    /// 44100 as an 80-bit extended float.
    const RATE_44100: [u8; 10] = [0x40, 0x0E, 0xAC, 0x44, 0, 0, 0, 0, 0, 0];

    /// A minimal AIFF: a `COMM` chunk claiming `channels` at `rate`, 16 bits, and 400 bytes of
    /// audio data.
    fn aiff_header(channels: u16, rate: [u8; 10]) -> Vec<u8> {
        let frames = 400 / (2 * u32::from(channels.max(1)));
        let comm = [
            &channels.to_be_bytes()[..],
            &frames.to_be_bytes(),
            &16u16.to_be_bytes(),
            &rate,
        ]
        .concat();
        let ssnd = [&[0; 8][..], &[0; 400]].concat();
        let chunks = [
            &b"AIFFCOMM"[..],
            &18u32.to_be_bytes(),
            &comm,
            b"SSND",
            &408u32.to_be_bytes(),
            &ssnd,
        ]
        .concat();
        let size = u32::try_from(chunks.len()).unwrap();
        [&b"FORM"[..], &size.to_be_bytes(), &chunks].concat()
    }

    fn limit_message(path: &std::path::Path) -> String {
        match SourceDecoder::open(path, &DecodeOptions::default()) {
            Err(DecodeError::Limit(msg)) => msg,
            other => panic!("expected a limit error, got {:?}", other.err()),
        }
    }

    #[test]
    fn absurd_headers_are_rejected_before_symphonia_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("60000.wav", wav_header(60000, 44100), "channel count 60000"),
            ("0.wav", wav_header(0, 44100), "channel count 0"),
            ("rate0.wav", wav_header(2, 0), "sample rate 0 Hz"),
            (
                "rate4e9.wav",
                wav_header(2, 4_000_000_000),
                "sample rate 4000000000 Hz",
            ),
            (
                "1000.aiff",
                aiff_header(1000, RATE_44100),
                "channel count 1000",
            ),
        ];
        for (name, bytes, needle) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let msg = limit_message(&path);
            assert!(msg.contains(needle), "{name}: {msg}");
            assert!(msg.contains("supported range"), "{name}: {msg}");
        }
    }

    #[test]
    fn each_field_is_checked_against_the_options() {
        let options = DecodeOptions::default();
        let check = |head: &[u8]| read_claims(head).unwrap().check(&options);
        let mut wav = wav_header(2, 44100);
        assert!(check(&wav).is_ok());
        for (bits, ok) in [(0u16, false), (65, false), (64, true), (8, true)] {
            wav[34..36].copy_from_slice(&bits.to_le_bytes());
            let result = check(&wav);
            assert_eq!(result.is_ok(), ok, "{bits} bits: {result:?}");
        }
        // MP3 in WAV (format 0x55) may write 0 bits: not judged here.
        wav[20..22].copy_from_slice(&0x55u16.to_le_bytes());
        assert!(check(&wav).is_ok());

        let small = DecodeOptions {
            max_channels: 2,
            min_sample_rate: 44_100,
            max_sample_rate: 44_100,
            ..options
        };
        assert!(
            read_claims(&wav_header(2, 44100))
                .unwrap()
                .check(&small)
                .is_ok()
        );
        let err = read_claims(&wav_header(3, 44100)).unwrap().check(&small);
        assert!(matches!(err, Err(DecodeError::Limit(m)) if m.contains("1 to 2")));
        let err = read_claims(&wav_header(2, 48000)).unwrap().check(&small);
        assert!(matches!(err, Err(DecodeError::Limit(m)) if m.contains("rate 48000")));
    }

    #[test]
    fn aiff_rates_are_read_from_80_bit_floats() {
        let claims = |rate| read_claims(&aiff_header(2, rate)).map(|c| c.sample_rate);
        assert_eq!(claims(RATE_44100), Some(44100));
        let mut half = RATE_44100;
        half[1] -= 1;
        assert_eq!(claims(half), Some(22050));
        // 2^70 saturates; a negative rate, infinity and a zero are left to symphonia or zero.
        let huge = [0x40, 0x45, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(claims(huge), Some(u64::MAX));
        let negative = [0xC0, 0x0E, 0xAC, 0x44, 0, 0, 0, 0, 0, 0];
        assert_eq!(claims(negative), None);
        assert_eq!(claims([0x7F, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(claims([0; 10]), Some(0));
        assert_eq!(
            claims([0x3F, 0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Some(0),
            "0.5"
        );
    }

    #[test]
    fn chunks_ahead_of_fmt_are_skipped_with_their_padding() {
        let plain = wav_header(60000, 44100);
        let junk = [&b"JUNK"[..], &3u32.to_le_bytes(), &[1, 2, 3, 0]].concat();
        let padded = [&plain[..12], &junk, &plain[12..]].concat();
        assert_eq!(read_claims(&padded).unwrap().channels, 60000);
        let mut rf64 = padded.clone();
        rf64[..4].copy_from_slice(b"RF64");
        assert_eq!(read_claims(&rf64).unwrap().channels, 60000);
    }

    #[test]
    fn what_cannot_be_parsed_is_left_to_symphonia() {
        let wav = wav_header(60000, 44100);
        // Cut inside the `fmt ` chunk, not a WAV at all, and `fmt ` beyond the bytes read.
        assert_eq!(read_claims(&wav[..30]), None);
        assert_eq!(read_claims(b"ID3\x04\0\0\0\0\0\0 not a header"), None);
        let far = usize::try_from(HEAD_BYTES).unwrap();
        let junk = [&b"JUNK"[..], &(far as u32).to_le_bytes(), &vec![0; far]].concat();
        let late = [&wav[..12], &junk, &wav[12..]].concat();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.wav");
        std::fs::write(&path, late).unwrap();
        let mut file = File::open(&path).unwrap();
        assert!(check_header(&mut file, &DecodeOptions::default()).is_ok());
    }

    #[test]
    fn real_wav_and_aiff_headers_pass_and_the_file_is_rewound() {
        let dir = tempfile::tempdir().unwrap();
        for (name, args) in [
            ("s16.wav", ""),
            ("s24-6ch.wav", "-ac 6 -c:a pcm_s24le"),
            ("f64.wav", "-c:a pcm_f64le"),
            ("rf64.wav", "-rf64 always"),
            ("s16.aiff", ""),
            ("sowt.aiff", "-c:a pcm_s16le"),
        ] {
            let path = ffmpeg(dir.path(), name, &format!("{SINE} {args}"), &[]);
            let mut file = File::open(&path).unwrap();
            let head: Vec<u8> = std::fs::read(&path).unwrap();
            let claims = read_claims(&head).unwrap_or_else(|| panic!("{name}: no claims"));
            assert_eq!(claims.sample_rate, 44100, "{name}");
            check_header(&mut file, &DecodeOptions::default()).unwrap();
            assert_eq!(file.stream_position().unwrap(), 0, "{name}");
        }
        for bytes in [wav_header(2, 44100), aiff_header(2, RATE_44100)] {
            let claims = read_claims(&bytes).unwrap();
            assert!(
                claims.check(&DecodeOptions::default()).is_ok(),
                "{claims:?}"
            );
        }
    }
}
