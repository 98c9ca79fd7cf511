//! Validated settings built from the raw command-line flags of [`crate::cli`] (`TryFrom` the
//! flags, as ripgrep does): [`IngestConfig`] here, the ladder in [`ladder`], [`ServeConfig`] in
//! [`serve`]. Every check of a flag's value lives here, so `main` only dispatches.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cli::{IngestArgs, ServeArgs};
use crate::ingest::decode::DecodeOptions;
use crate::store::LibraryLocation;
use crate::store::location::{LocationError, os_path};

pub mod ladder;
pub mod serve;

pub use crate::cli::{
    DEFAULT_ADDR, DEFAULT_CACHE_MIB, DEFAULT_CORS_ORIGIN, DEFAULT_LADDER, DEFAULT_LIBRARY,
    DEFAULT_SEGMENT_SECONDS, DEFAULT_WORKER_MEMORY_MIB,
};
pub use ladder::{Ladder, Rung};
pub use serve::{ConnLimits, ControlConfig, MAX_CACHE_MIB, ServeConfig};

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
    /// `--library` is neither a directory nor a usable `s3://BUCKET[/PREFIX]`.
    #[error("invalid --library: {0}")]
    Library(#[from] LocationError),
    /// The running executable (which ingest workers run) cannot be found.
    #[error("cannot find the segue executable: {0}")]
    CurrentExe(#[source] std::io::Error),
}

/// How to run ingest workers (`ingest::worker`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The `segue` executable (its `ingest-worker` subcommand is run).
    #[serde(with = "os_path")]
    pub program: PathBuf,
    /// Address-space limit of a worker, in bytes.
    pub memory_bytes: u64,
}

impl ConfigError {
    /// A [`ConfigError::Range`] of `flag`.
    pub fn range(flag: &'static str, value: String, reason: &'static str) -> Self {
        ConfigError::Range {
            flag,
            value,
            reason,
        }
    }
}

impl WorkerConfig {
    /// Workers run by this same executable, each limited to `memory_mib` MiB (256 to 1 TiB).
    pub fn this_executable(memory_mib: u64) -> Result<Self, ConfigError> {
        if !(256..=1 << 20).contains(&memory_mib) {
            return Err(ConfigError::Range {
                flag: "--worker-memory-mib",
                value: memory_mib.to_string(),
                reason: "must be from 256 to 1048576",
            });
        }
        Ok(WorkerConfig {
            program: std::env::current_exe().map_err(ConfigError::CurrentExe)?,
            memory_bytes: memory_mib << 20,
        })
    }
}

/// Validated settings of `segue ingest`. It crosses the worker-process boundary whole
/// (serialized), so every field here reaches the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestConfig {
    /// The library: a directory or a bucket.
    pub library: LibraryLocation,
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
    /// Ingest each file in a worker process (`None`: in this process).
    pub worker: Option<WorkerConfig>,
}

impl IngestConfig {
    /// Builds a validated config (in-process ingest, afterburner on, default decode limits).
    pub fn new(
        library: LibraryLocation,
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
            worker: None,
        })
    }

    /// The settings of `segue serve --ingest`: the default ladder and segments, one file at a
    /// time, each in a worker with the default memory limit.
    pub fn serve_defaults(library: LibraryLocation) -> Result<Self, ConfigError> {
        Ok(IngestConfig {
            worker: Some(WorkerConfig::this_executable(DEFAULT_WORKER_MEMORY_MIB)?),
            ..IngestConfig::new(library, DEFAULT_LADDER, DEFAULT_SEGMENT_SECONDS, None)?
        })
    }
}

impl TryFrom<&IngestArgs> for IngestConfig {
    type Error = ConfigError;

    fn try_from(args: &IngestArgs) -> Result<Self, ConfigError> {
        Ok(IngestConfig {
            afterburner: !args.no_afterburner,
            worker: Some(WorkerConfig::this_executable(args.worker_memory_mib)?),
            ..IngestConfig::new(
                args.library.location()?,
                &args.ladder,
                args.segment_seconds,
                args.jobs,
            )?
        })
    }
}

impl TryFrom<&ServeArgs> for ServeConfig {
    type Error = ConfigError;

    fn try_from(args: &ServeArgs) -> Result<Self, ConfigError> {
        let mut config = ServeConfig::new(
            args.library.location()?,
            &args.addr,
            &args.cors_origin,
            args.cache_mib,
        )?
        .with_disk_cache(args.cache_dir.clone(), args.cache_dir_mib)?
        .with_rescan_secs(args.rescan_secs)?
        .with_control(&args.ws_origin, args.ws_heartbeat_secs, args.ws_rate)?
        .with_bus(
            args.bus.as_deref(),
            std::env::var("SEGUE_BUS_KEY").ok().as_deref(),
            args.session_ttl_secs,
        )?;
        config.control.conformance_echo = args.ws_conformance_echo;
        match &args.signing_key {
            Some(key) => config.with_signing(key, args.token_ttl_secs),
            None => Ok(config),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ingest::encode::AacProfile;

    /// A config with a value other than the default in every field. A struct literal without
    /// `..Default`: a new field does not compile until it is given a non-default value here.
    pub(crate) fn unusual_ingest_config() -> IngestConfig {
        IngestConfig {
            // Not UTF-8: a Unix path is bytes, and the worker must get them unchanged.
            library: LibraryLocation::Dir(PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                    b"/srv/lib with space/\xff\xc3\xbc".to_vec(),
                ),
            )),
            ladder: Ladder {
                rungs: vec![
                    Rung {
                        profile: AacProfile::HeAacV2,
                        bitrate: 32_000,
                    },
                    Rung {
                        profile: AacProfile::AacLc,
                        bitrate: 96_000,
                    },
                ],
            },
            // Seventeen significant digits: serde_json's default float parsing is off by one
            // ulp on these (the `float_roundtrip` feature makes it exact).
            segment_seconds: 21.971899945097178,
            first_segment_seconds: 12.260554797823735,
            jobs: 7,
            afterburner: false,
            decode: DecodeOptions {
                max_channels: 6,
                max_sample_rate: 96_000,
                min_sample_rate: 11_025,
                max_duration_seconds: 125,
            },
            worker: Some(WorkerConfig {
                program: PathBuf::from("/opt/segue/bin/segue"),
                memory_bytes: 300 << 20,
            }),
        }
    }

    #[test]
    fn the_unusual_config_differs_from_the_defaults_in_every_field() {
        let unusual = unusual_ingest_config();
        let usual = IngestConfig::new(
            PathBuf::from(DEFAULT_LIBRARY).into(),
            DEFAULT_LADDER,
            DEFAULT_SEGMENT_SECONDS,
            None,
        )
        .unwrap();
        let usual_decode = DecodeOptions::default();
        assert_ne!(unusual.library, usual.library);
        assert_ne!(unusual.ladder, usual.ladder);
        assert_ne!(unusual.segment_seconds, usual.segment_seconds);
        assert_ne!(unusual.first_segment_seconds, usual.first_segment_seconds);
        assert_ne!(unusual.jobs, usual.jobs);
        assert_ne!(unusual.afterburner, usual.afterburner);
        assert_ne!(unusual.worker, usual.worker);
        let (a, b) = (unusual.decode, usual_decode);
        assert_ne!(a.max_channels, b.max_channels);
        assert_ne!(a.max_sample_rate, b.max_sample_rate);
        assert_ne!(a.min_sample_rate, b.min_sample_rate);
        assert_ne!(a.max_duration_seconds, b.max_duration_seconds);
    }

    #[test]
    fn flags_out_of_range_are_config_errors() {
        let range =
            |r: Result<IngestConfig, ConfigError>| matches!(r, Err(ConfigError::Range { .. }));
        assert!(range(IngestConfig::new(
            PathBuf::from("l").into(),
            DEFAULT_LADDER,
            0.5,
            None
        )));
        assert!(range(IngestConfig::new(
            PathBuf::from("l").into(),
            DEFAULT_LADDER,
            4.0,
            Some(0)
        )));
        assert!(matches!(
            WorkerConfig::this_executable(255),
            Err(ConfigError::Range { .. })
        ));
    }
}
