//! A bucket library on a fresh moto server, filled and served by `segue` processes that each
//! run as a machine of its own: the same AWS variables, a separate state dir (catalog).

use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use segue::catalog::TrackRecord;

use crate::common::s3::{BUCKET, S3Server};
use crate::common::{ServeCommand, ServeProcess, TempLibrary, make_wav};

/// The prefix of the library in the bucket.
pub const PREFIX: &str = "prod";

/// A moto server with an (initially empty) library at `s3://segue-test/prod`, and a temp dir
/// for the inputs and for each machine's state.
pub struct BucketLibrary {
    /// The S3 server; stopped on drop, after the origins (fields drop in order).
    pub s3: S3Server,
    /// Inputs and state dirs.
    pub temp: TempLibrary,
}

impl BucketLibrary {
    /// Starts the S3 server.
    pub fn new() -> BucketLibrary {
        BucketLibrary {
            s3: S3Server::start(),
            temp: TempLibrary::new(),
        }
    }

    /// `s3://segue-test/prod`.
    pub fn url(&self) -> String {
        self.s3.url(PREFIX)
    }

    /// A `seconds`-long 48 kHz stereo WAV of the test signal, named `name`.
    pub fn wav(&self, name: &str, seconds: f64) -> PathBuf {
        make_wav(&self.temp.inputs(), name, 48_000, seconds)
    }

    /// The state dir of machine `machine` (created on first use by segue).
    fn state(&self, machine: &str) -> PathBuf {
        self.temp.dir.path().join("machines").join(machine)
    }

    /// Ingests `input` into the bucket with `segue ingest` on machine `machine`; its track id.
    pub fn ingest(&self, machine: &str, input: &Path) -> String {
        let ids = self
            .s3
            .ingest_from_machine(PREFIX, &self.state(machine), &[input]);
        assert_eq!(ids.len(), 1, "one line per input: {ids:?}");
        ids.into_iter().next().unwrap_or_default()
    }

    /// `segue serve --library s3://… args` on machine `machine`.
    pub fn serve(&self, machine: &str, args: &[&str]) -> ServeProcess {
        ServeCommand::new(Path::new(&self.url()))
            .args(args)
            .envs(self.s3.machine_env(&self.state(machine)))
            .start()
    }

    /// The object at `key` (relative to the library's prefix), read from the bucket with
    /// object_store's S3 client (moto refuses unsigned reads).
    pub async fn object(&self, key: &str) -> Vec<u8> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(BUCKET);
        for (name, value) in self.s3.env() {
            let key: AmazonS3ConfigKey = name.to_ascii_lowercase().parse().expect("a config key");
            builder = builder.with_config(key, value);
        }
        let store = builder.build().expect("an S3 client for the test bucket");
        let path = object_store::path::Path::from(format!("{PREFIX}/{key}"));
        let got = store.get(&path).await;
        let got = got.unwrap_or_else(|e| panic!("GET {path} from the bucket: {e}"));
        got.bytes().await.expect("the object's bytes").to_vec()
    }

    /// The record of track `id`, read from the bucket.
    pub async fn record(&self, id: &str) -> TrackRecord {
        let bytes = self.object(&format!("tracks/{id}/track.json")).await;
        serde_json::from_slice(&bytes).expect("a track record")
    }
}

/// Panics if `server`'s log shows a panic.
pub fn assert_no_panic(server: &ServeProcess, name: &str) {
    let log = server.log();
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{name} panicked:\n{}",
        log.join("\n")
    );
}

/// The sum of every sample of `name` whose labels include all of `labels` (`op="get"`…), in
/// a metrics exposition; the label order of the exposition does not matter.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (series, value) = rest.rsplit_once(' ')?;
            let inside = series.strip_prefix('{')?.strip_suffix('}')?;
            let have: Vec<&str> = inside.split(',').collect();
            labels
                .iter()
                .all(|l| have.contains(l))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}
