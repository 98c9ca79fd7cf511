//! The ABR ladder: which AAC renditions every track gets, parsed from a `--ladder` spec and
//! checked against Apple's HLS authoring rules for audio.

use super::ConfigError;
use crate::ingest::encode::AacProfile;

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

/// A parsed ladder, sorted by bitrate (lowest first), without duplicates. Serialized as its
/// spec string, so what is read back is checked again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
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

    /// The canonical spec string of this ladder; [`Ladder::parse`] reads it back exactly (a
    /// bitrate that is not whole kbit/s is written in bit/s, not rounded).
    pub fn spec(&self) -> String {
        self.rungs
            .iter()
            .map(|r| match r.bitrate % 1000 {
                0 => format!("{}:{}k", r.profile.name(), r.bitrate / 1000),
                _ => format!("{}:{}", r.profile.name(), r.bitrate),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl TryFrom<String> for Ladder {
    type Error = ConfigError;

    fn try_from(spec: String) -> Result<Self, ConfigError> {
        Ladder::parse(&spec)
    }
}

impl From<Ladder> for String {
    fn from(ladder: Ladder) -> String {
        ladder.spec()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_parses_and_sorts() {
        let l = Ladder::parse("aac-lc:256k, he-aac:48k,aac-lc:128000").unwrap();
        assert_eq!(l.spec(), "he-aac:48k,aac-lc:128k,aac-lc:256k");
        assert_eq!(l.rungs[0].id(), "he-aac-48k");
        let odd = Ladder::parse("aac-lc:128500").unwrap();
        assert_eq!(Ladder::parse(&odd.spec()).unwrap(), odd);
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
