//! Validated settings built from the raw command-line flags.

use std::path::PathBuf;

use crate::ingest::decode::DecodeOptions;
use crate::ingest::encode::AacProfile;

/// Default library directory, relative to the working directory.
pub const DEFAULT_LIBRARY: &str = "media/library";
/// Default ladder: HE-AAC for the low rung (it sounds better than AAC-LC at 64 kbit/s, and
/// Apple's authoring spec allows HE-AAC up to 64 kbit/s), AAC-LC above.
pub const DEFAULT_LADDER: &str = "he-aac:64k,aac-lc:128k,aac-lc:256k";
/// Default nominal segment duration in seconds (CDN-friendly).
pub const DEFAULT_SEGMENT_SECONDS: f64 = 4.0;
/// Default duration of the short first segment, in seconds (fast start).
pub const DEFAULT_FIRST_SEGMENT_SECONDS: f64 = 1.0;

/// A configuration error, with the flag and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The ladder spec could not be parsed.
    #[error("invalid --ladder {spec:?}: {reason}")]
    Ladder {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A numeric flag is out of range.
    #[error("invalid {flag} {value}: {reason}")]
    Range {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        reason: &'static str,
    },
}

/// One rung of the ABR ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// AAC profile.
    pub profile: AacProfile,
    /// Target bitrate in bit/s.
    pub bitrate: u32,
}

impl Rung {
    /// The rendition id, e.g. `aac-lc-128k`.
    pub fn id(&self) -> String {
        format!("{}-{}k", self.profile.name(), self.bitrate / 1000)
    }
}

/// A parsed ladder, sorted by bitrate (lowest first), without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    /// The rungs, lowest bitrate first.
    pub rungs: Vec<Rung>,
}

impl Ladder {
    /// Parses `profile:bitrate[,profile:bitrate...]`, e.g. `he-aac:48k,aac-lc:128k`.
    ///
    /// Enforces Apple's HLS authoring rules for audio: at least one stereo AAC-LC rung, and
    /// no HE-AAC above 64 kbit/s.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError::Ladder {
            spec: spec.to_string(),
            reason,
        };
        let mut rungs = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (profile, rate) = part
                .split_once(':')
                .ok_or_else(|| err(format!("{part:?} is not profile:bitrate")))?;
            let profile = AacProfile::parse(profile.trim()).ok_or_else(|| {
                err(format!(
                    "unknown profile {profile:?} (use aac-lc, he-aac or he-aac-v2)"
                ))
            })?;
            let bitrate = parse_bitrate(rate.trim())
                .ok_or_else(|| err(format!("{rate:?} is not a bitrate like 128k or 128000")))?;
            if !(16_000..=320_000).contains(&bitrate) {
                return Err(err(format!("{bitrate} bit/s is outside 16k..320k")));
            }
            if profile != AacProfile::AacLc && bitrate > 64_000 {
                return Err(err(format!(
                    "{} above 64 kbit/s is not allowed (HLS authoring spec)",
                    profile
                )));
            }
            rungs.push(Rung { profile, bitrate });
        }
        if rungs.is_empty() {
            return Err(err("no rungs".into()));
        }
        if !rungs.iter().any(|r| r.profile == AacProfile::AacLc) {
            return Err(err(
                "at least one aac-lc rung is required (HLS authoring spec)".into(),
            ));
        }
        rungs.sort_by_key(|r| (r.bitrate, r.profile.object_type()));
        let before = rungs.len();
        rungs.dedup_by_key(|r| r.id());
        if rungs.len() != before {
            return Err(err("duplicate rungs".into()));
        }
        Ok(Ladder { rungs })
    }

    /// The canonical spec string of this ladder.
    pub fn spec(&self) -> String {
        self.rungs
            .iter()
            .map(|r| format!("{}:{}k", r.profile.name(), r.bitrate / 1000))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn parse_bitrate(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    if let Some(k) = lower.strip_suffix('k') {
        k.parse::<u32>().ok()?.checked_mul(1000)
    } else {
        lower.parse().ok()
    }
}

/// Validated settings of `segue ingest`.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Library directory.
    pub library: PathBuf,
    /// The ABR ladder.
    pub ladder: Ladder,
    /// Nominal segment duration in seconds.
    pub segment_seconds: f64,
    /// Duration of the first segment in seconds.
    pub first_segment_seconds: f64,
    /// Files ingested in parallel.
    pub jobs: usize,
    /// fdk-aac afterburner (best quality).
    pub afterburner: bool,
    /// Limits applied to input files.
    pub decode: DecodeOptions,
}

impl IngestConfig {
    /// Builds a validated config.
    pub fn new(
        library: PathBuf,
        ladder: &str,
        segment_seconds: f64,
        jobs: Option<usize>,
    ) -> Result<Self, ConfigError> {
        if !(1.0..=30.0).contains(&segment_seconds) {
            return Err(ConfigError::Range {
                flag: "--segment-seconds",
                value: segment_seconds.to_string(),
                reason: "must be between 1 and 30",
            });
        }
        let jobs = jobs.unwrap_or(1);
        if !(1..=64).contains(&jobs) {
            return Err(ConfigError::Range {
                flag: "--jobs",
                value: jobs.to_string(),
                reason: "must be between 1 and 64",
            });
        }
        Ok(IngestConfig {
            library,
            ladder: Ladder::parse(ladder)?,
            segment_seconds,
            first_segment_seconds: DEFAULT_FIRST_SEGMENT_SECONDS.min(segment_seconds),
            jobs,
            afterburner: true,
            decode: DecodeOptions::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_parses_and_sorts() {
        let l = Ladder::parse("aac-lc:256k, he-aac:48k,aac-lc:128000").unwrap();
        assert_eq!(l.spec(), "he-aac:48k,aac-lc:128k,aac-lc:256k");
        assert_eq!(l.rungs[0].id(), "he-aac-48k");
    }

    #[test]
    fn ladder_rejects_what_the_authoring_spec_forbids() {
        for bad in [
            "he-aac:96k,aac-lc:128k",
            "he-aac:48k",
            "opus:64k",
            "aac-lc:12k",
            "aac-lc",
            "",
            "aac-lc:128k,aac-lc:128k",
        ] {
            let e = Ladder::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--ladder"), "{bad}: {e}");
        }
    }
}
