//! Segments -> CMAF init and media segment bytes (ISO/IEC 14496-12, ISO/IEC 23000-19).
//!
//! Box writers are pure functions of a plain config, built from mp4-atom's typed boxes. The one
//! exception is the loudness box (`ludt`/`tlou`, ISO/IEC 14496-12 12.2.7), which mp4-atom does
//! not model: it is written by hand below and placed in the track's `udta`, so the `trak` box is
//! assembled from mp4-atom-encoded children plus that one hand-written child.
//!
//! Priming and padding are signalled with an edit list (ISO/IEC 14496-12 8.6.6): one edit that
//! starts at `media_time = priming` and lasts the valid samples, so a decoder that honours it
//! outputs exactly the source's samples.

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, Codec, Dinf, Dref, DrefEntry, Edts, Elst, ElstEntry, Encode, Esds, FixedPoint, FourCC,
    Ftyp, Hdlr, Header, Mdhd, Mdia, Mfhd, Minf, Moof, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsc,
    Stsd, Stsz, Stts, Styp, Tfdt, Tfhd, Tkhd, Traf, Trex, Trun, TrunEntry, TrunSamples, Url,
};

use super::segment::SegmentData;

/// The only track in every segue file.
pub const TRACK_ID: u32 = 1;

/// Sample flags for AAC access units: every one is a sync sample that depends on no other
/// (`sample_depends_on = 2`, ISO/IEC 14496-12 8.8.3.1).
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;

/// Errors of the box writers (an mp4-atom encode failure; not recoverable).
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// mp4-atom refused to encode a box.
    #[error("writing the {what} box failed: {source}")]
    Encode {
        /// Which box.
        what: &'static str,
        /// mp4-atom's error.
        #[source]
        source: mp4_atom::Error,
    },
    /// A value does not fit its field.
    #[error("{0} does not fit its MP4 field")]
    Overflow(&'static str),
}

/// Loudness figures to carry in the init segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoudnessBox {
    /// Integrated (program) loudness in LUFS.
    pub integrated_lufs: f64,
    /// Maximum true peak in dBTP.
    pub true_peak_dbtp: f64,
    /// Maximum sample peak in dBFS.
    pub sample_peak_dbfs: f64,
}

/// Everything an init segment depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct InitConfig {
    /// Sample rate in Hz, also the media timescale.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// MPEG-4 audio object type (2 AAC-LC, 5 HE-AAC, 29 HE-AAC v2).
    pub object_type: u8,
    /// AudioSpecificConfig bytes from the encoder.
    pub audio_specific_config: Vec<u8>,
    /// Average bitrate in bit/s (`esds`).
    pub avg_bitrate: u32,
    /// Maximum bitrate in bit/s over any one second (`esds`).
    pub max_bitrate: u32,
    /// Largest access unit in bytes (`esds` bufferSizeDB).
    pub buffer_size: u32,
    /// Encoder priming in samples: the edit starts here.
    pub priming: u64,
    /// Valid samples: the edit's duration.
    pub valid_samples: u64,
    /// Loudness to write in `udta/ludt`.
    pub loudness: Option<LoudnessBox>,
}

fn encode_to<T: Encode>(value: &T, what: &'static str, out: &mut Vec<u8>) -> Result<(), Fmp4Error> {
    value
        .encode(out)
        .map_err(|source| Fmp4Error::Encode { what, source })
}

/// Wraps `body` in a box header of type `kind`.
fn wrap_box(kind: &[u8; 4], body: &[u8], out: &mut Vec<u8>) -> Result<(), Fmp4Error> {
    let header = Header {
        kind: FourCC::new(kind),
        size: Some(body.len()),
    };
    encode_to(&header, "box header", out)?;
    out.extend_from_slice(body);
    Ok(())
}

/// Writes a CMAF init segment: `ftyp` + `moov` with one audio track and `mvex`.
pub fn write_init_segment(config: &InitConfig) -> Result<Vec<u8>, Fmp4Error> {
    let mut out = Vec::with_capacity(1024);
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ],
    };
    encode_to(&ftyp, "ftyp", &mut out)?;

    let mut moov = Vec::with_capacity(1024);
    let mvhd = Mvhd {
        timescale: config.sample_rate,
        rate: 1.into(),
        volume: 1.into(),
        next_track_id: TRACK_ID + 1,
        ..Default::default()
    };
    encode_to(&mvhd, "mvhd", &mut moov)?;
    let trak = write_trak(config)?;
    wrap_box(b"trak", &trak, &mut moov)?;
    let mvex = Mvex {
        mehd: None,
        trex: vec![Trex {
            track_id: TRACK_ID,
            default_sample_description_index: 1,
            default_sample_duration: 0,
            default_sample_size: 0,
            default_sample_flags: SYNC_SAMPLE_FLAGS,
        }],
    };
    encode_to(&mvex, "mvex", &mut moov)?;
    wrap_box(b"moov", &moov, &mut out)?;
    Ok(out)
}

fn write_trak(config: &InitConfig) -> Result<Vec<u8>, Fmp4Error> {
    let mut trak = Vec::with_capacity(768);
    let tkhd = Tkhd {
        track_id: TRACK_ID,
        enabled: true,
        in_movie: true,
        volume: 1.into(),
        alternate_group: 1,
        ..Default::default()
    };
    encode_to(&tkhd, "tkhd", &mut trak)?;
    let edts = Edts {
        elst: Some(Elst {
            entries: vec![ElstEntry {
                segment_duration: config.valid_samples,
                media_time: Some(config.priming),
                media_rate: 1.into(),
            }],
        }),
    };
    encode_to(&edts, "edts", &mut trak)?;
    let asc = &config.audio_specific_config;
    // mp4-atom's `u24::try_from` keeps the low 24 bits of any `u32`: the range is checked here.
    let buffer_size = Some(config.buffer_size)
        .filter(|&b| b <= mp4_atom::u24::MAX)
        .and_then(|b| mp4_atom::u24::try_from(b).ok())
        .ok_or(Fmp4Error::Overflow("bufferSizeDB"))?;
    // AudioSampleEntry's samplerate is 16.16 fixed point (ISO/IEC 14496-12 12.2.3.2): a rate
    // above 65535 Hz needs a v1 entry with a `srat` box, which we do not write.
    let sample_rate = u16::try_from(config.sample_rate)
        .map_err(|_| Fmp4Error::Overflow("AudioSampleEntry samplerate"))?;
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: config.channels,
            sample_size: 16,
            sample_rate: FixedPoint::new(sample_rate, 0),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: 0,
                dec_config: DecoderConfig {
                    object_type_indication: 0x40, // MPEG-4 Audio (ISO/IEC 14496-1 Table 5)
                    stream_type: 0x05,            // AudioStream
                    up_stream: 0,
                    buffer_size_db: buffer_size,
                    max_bitrate: config.max_bitrate,
                    avg_bitrate: config.avg_bitrate,
                    dec_specific: Some(DecoderSpecific {
                        profile: asc.first().map_or(config.object_type, |b| b >> 3),
                        freq_index: 0,
                        chan_conf: 0,
                        raw: asc.clone(),
                    }),
                },
                sl_config: SLConfig {},
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    };
    let mdia = Mdia {
        mdhd: Mdhd {
            timescale: config.sample_rate,
            language: "und".into(),
            ..Default::default()
        },
        hdlr: Hdlr {
            handler: FourCC::new(b"soun"),
            name: "segue audio".into(),
        },
        minf: Minf {
            smhd: Some(Smhd::default()),
            dinf: Dinf {
                dref: Dref {
                    entries: vec![DrefEntry::Url(Url {
                        location: String::new(),
                    })],
                },
            },
            stbl: Stbl {
                stsd: Stsd {
                    codecs: vec![Codec::Mp4a(mp4a)],
                },
                stts: Stts::default(),
                stsc: Stsc::default(),
                stsz: Stsz::default(),
                stco: Some(Stco::default()),
                ..Default::default()
            },
            ..Default::default()
        },
    };
    encode_to(&mdia, "mdia", &mut trak)?;
    if let Some(loudness) = &config.loudness {
        let mut ludt = Vec::new();
        wrap_box(b"tlou", &tlou_body(loudness), &mut ludt)?;
        let mut udta = Vec::new();
        wrap_box(b"ludt", &ludt, &mut udta)?;
        wrap_box(b"udta", &udta, &mut trak)?;
    }
    Ok(trak)
}

/// Body of a version-0 `tlou` (TrackLoudnessInfo) box, ISO/IEC 14496-12 12.2.7.2, with the
/// value codings of ISO/IEC 23003-4 (peak: 20 - v/32 dB; program loudness: -57.75 + v/4 LUFS).
fn tlou_body(l: &LoudnessBox) -> Vec<u8> {
    let peak = |db: f64| -> u16 {
        if !db.is_finite() {
            return 0; // 0 = not present
        }
        ((20.0 - db) * 32.0).round().clamp(1.0, 4095.0) as u16
    };
    let sample_peak = peak(l.sample_peak_dbfs);
    let true_peak = peak(l.true_peak_dbtp);
    let mut body = vec![0, 0, 0, 0]; // version 0, flags 0
    // reserved(3) = 0, downmix_ID(7) = 0, DRC_set_ID(6) = 0
    body.extend_from_slice(&[0, 0]);
    // sample peak (12 bits), true peak (12 bits)
    let peaks = (u32::from(sample_peak) << 12) | u32::from(true_peak);
    body.extend_from_slice(&peaks.to_be_bytes()[1..]);
    // measurement_system_for_TP = 2 (ITU-R BS.1770), reliability_for_TP = 3 (measured)
    body.push(0x23);
    let program = (l.integrated_lufs + 57.75) * 4.0;
    if l.integrated_lufs.is_finite() && (0.0..=255.0).contains(&program.round()) {
        body.push(1); // measurement_count
        body.push(1); // method_definition 1: program loudness
        body.push(program.round() as u8);
        body.push(0x13); // measurement_system 1 (EBU R128), reliability 3 (measured)
    } else {
        body.push(0);
    }
    body
}

/// Writes one CMAF media segment: `styp`, `moof` (`mfhd`, `traf` with `tfhd`, `tfdt`, `trun`)
/// and `mdat`.
pub fn write_media_segment(segment: &SegmentData) -> Result<Vec<u8>, Fmp4Error> {
    let sequence_number =
        u32::try_from(segment.index + 1).map_err(|_| Fmp4Error::Overflow("sequence number"))?;
    let mut out = Vec::with_capacity(segment.data.len() + 64 + segment.sample_sizes.len() * 4);
    let styp = Styp {
        major_brand: FourCC::new(b"msdh"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"msdh"),
            FourCC::new(b"cmfs"),
            FourCC::new(b"cmfc"),
        ],
    };
    encode_to(&styp, "styp", &mut out)?;
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id: TRACK_ID,
                default_sample_duration: Some(segment.sample_duration),
                default_sample_flags: Some(SYNC_SAMPLE_FLAGS),
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: segment.base_decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: TrunSamples::Explicit(
                    segment
                        .sample_sizes
                        .iter()
                        .map(|&size| TrunEntry {
                            size: Some(size),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }],
            ..Default::default()
        }],
    };
    // The data offset is relative to the moof start (default-base-is-moof) and points past the
    // mdat header; its own size does not change with its value, so measure once and rewrite.
    let mut probe = Vec::new();
    encode_to(&moof, "moof", &mut probe)?;
    let offset = i32::try_from(probe.len() + 8).map_err(|_| Fmp4Error::Overflow("data offset"))?;
    moof.traf[0].trun[0].data_offset = Some(offset);
    encode_to(&moof, "moof", &mut out)?;
    wrap_box(b"mdat", &segment.data, &mut out)?;
    Ok(out)
}

/// The integration tests' strict mp4-atom reader (every box re-encodes to its bytes), so the
/// box writers' unit tests read their output as strictly. (Declared here, not inside `tests`:
/// a `#[path]` there would start from src/ingest/fmp4/tests/, which does not exist.)
#[cfg(test)]
#[path = "../../tests/common/fmp4.rs"]
#[allow(dead_code)] // the integration tests use the rest
mod strict;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> InitConfig {
        InitConfig {
            sample_rate: 48_000,
            channels: 2,
            object_type: 2,
            audio_specific_config: vec![0x11, 0x90],
            avg_bitrate: 128_000,
            max_bitrate: 140_000,
            buffer_size: 800,
            priming: 2048,
            valid_samples: 480_000,
            loudness: Some(LoudnessBox {
                integrated_lufs: -14.2,
                true_peak_dbtp: -1.1,
                sample_peak_dbfs: -1.3,
            }),
        }
    }

    #[test]
    fn init_segment_round_trips_through_mp4_atom() {
        let bytes = write_init_segment(&config()).unwrap();
        let init = strict::strict_init(&bytes, "init segment");
        assert_eq!(init.ftyp.major_brand, FourCC::new(b"iso6"));
        assert_eq!(
            init.tlou,
            Some(tlou_body(&config().loudness.unwrap())),
            "the loudness box in trak/udta/ludt"
        );
        let trak = &init.moov.trak[0];
        let elst = trak.edts.as_ref().unwrap().elst.as_ref().unwrap();
        assert_eq!(elst.entries[0].media_time, Some(2048));
        assert_eq!(elst.entries[0].segment_duration, 480_000);
        let Codec::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not mp4a")
        };
        let dec = &mp4a.esds.es_desc.dec_config;
        assert_eq!(dec.dec_specific.as_ref().unwrap().raw, vec![0x11, 0x90]);
        assert_eq!(trak.mdia.mdhd.timescale, 48_000);
    }

    #[test]
    fn values_that_do_not_fit_their_fields_are_errors() {
        let too_fast = InitConfig {
            sample_rate: 96_000,
            ..config()
        };
        assert!(matches!(
            write_init_segment(&too_fast),
            Err(Fmp4Error::Overflow("AudioSampleEntry samplerate"))
        ));
        let huge_buffer = InitConfig {
            buffer_size: 1 << 24,
            ..config()
        };
        assert!(matches!(
            write_init_segment(&huge_buffer),
            Err(Fmp4Error::Overflow("bufferSizeDB"))
        ));
    }

    #[test]
    fn loudness_box_encodes_iso_23003_4_values() {
        let body = tlou_body(&config().loudness.unwrap());
        let peaks = u32::from_be_bytes([0, body[6], body[7], body[8]]);
        let true_peak = f64::from(peaks & 0xFFF);
        assert!((20.0 - true_peak / 32.0 - -1.1).abs() < 1.0 / 32.0);
        assert_eq!(body[10], 1, "one measurement");
        assert_eq!(body[11], 1, "program loudness method");
        assert!((-57.75 + f64::from(body[12]) / 4.0 - -14.2).abs() <= 0.125);
    }

    #[test]
    fn media_segment_data_offset_points_at_the_samples() {
        let seg = SegmentData {
            index: 2,
            base_decode_time: 96_256,
            sample_duration: 1024,
            sample_sizes: vec![3, 5, 2],
            data: vec![1, 1, 1, 2, 2, 2, 2, 2, 3, 3],
        };
        let bytes = write_media_segment(&seg).unwrap();
        let strict = strict::strict_segment(&bytes, "media segment");
        let moof = &strict.moof;
        assert_eq!(moof.mfhd.sequence_number, 3);
        let traf = &moof.traf[0];
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 96_256);
        let offset = traf.trun[0].data_offset.unwrap() as usize;
        assert_eq!(
            offset, strict.payload_offset,
            "trun points at mdat's payload"
        );
        assert_eq!(strict.mdat.data, seg.data);
    }
}
