//! A library wherever it lives: the one handle ingest, the catalog and the server use, so none
//! of them knows whether it has a local directory or a bucket.
//!
//! A bucket library keeps its catalog index (a rebuildable cache of the track records) in a
//! local state directory: `--cache-dir` for `segue serve`, else under the user's cache
//! directory, one per endpoint, bucket and prefix.

use std::path::{Path, PathBuf};

use super::bucket::{Bucket, BucketError};
use super::layout::{CATALOG_FILE, TRACK_RECORD_FILE, TRACKS_DIR, is_track_id};
use super::location::{BucketUrl, LibraryLocation};
use super::{LibraryLayout, StagedTrack, StoreError};

/// A library: a local directory or a bucket prefix.
#[derive(Debug, Clone)]
pub enum Library {
    /// A local directory (the embedded default).
    Local(LibraryLayout),
    /// A bucket, with a local directory for its catalog index.
    Bucket {
        /// The bucket client.
        bucket: Bucket,
        /// Where the catalog index of this library is kept on this machine.
        state_dir: PathBuf,
    },
}

impl Library {
    /// The library at `location` (nothing is read or written yet). A bucket is configured from
    /// the environment; its catalog goes to `state_dir`, or the default one.
    pub fn new(location: &LibraryLocation, state_dir: Option<&Path>) -> Result<Self, StoreError> {
        Ok(match location {
            LibraryLocation::Dir(root) => Library::Local(LibraryLayout::new(root)),
            LibraryLocation::Bucket(url) => {
                let bucket = Bucket::from_env(url)?;
                let state_dir = match state_dir {
                    Some(dir) => dir.to_path_buf(),
                    None => default_state_dir(url, bucket.endpoint()),
                };
                Library::Bucket { bucket, state_dir }
            }
        })
    }

    /// Where the library is, as the user named it.
    pub fn location(&self) -> String {
        match self {
            Library::Local(layout) => layout.root().display().to_string(),
            Library::Bucket { bucket, .. } => bucket.url().to_string(),
        }
    }

    /// Tells `observer` of every request to a bucket library's bucket (no-op for a directory).
    pub fn observed_by(&mut self, observer: std::sync::Arc<dyn super::bucket::BucketObserver>) {
        if let Library::Bucket { bucket, .. } = self {
            bucket.observed_by(observer);
        }
    }

    /// The local directory of a local library.
    pub fn layout(&self) -> Option<&LibraryLayout> {
        match self {
            Library::Local(layout) => Some(layout),
            Library::Bucket { .. } => None,
        }
    }

    /// The bucket of a bucket library.
    pub fn bucket(&self) -> Option<&Bucket> {
        match self {
            Library::Local(_) => None,
            Library::Bucket { bucket, .. } => Some(bucket),
        }
    }

    /// Gets the library ready to be read: a directory is created if missing (and stale
    /// staging swept); a bucket must answer (reachable, credentials accepted).
    pub fn open_for_reading(&self) -> Result<(), StoreError> {
        match self {
            Library::Local(layout) => layout.create(),
            Library::Bucket { bucket, state_dir } => {
                bucket.block_on(bucket.check())?;
                create_dir(state_dir)
            }
        }
    }

    /// Gets the library ready to be written, failing up front ([`StoreError::NotWritable`],
    /// or an unusable bucket) before any work.
    pub fn open_for_writing(&self) -> Result<(), StoreError> {
        self.open_for_reading()?;
        match self {
            Library::Local(layout) => layout.ensure_writable(),
            Library::Bucket { .. } => Ok(()),
        }
    }

    /// Creates the directory the catalog lives in, if missing.
    pub fn create_root(&self) -> Result<(), StoreError> {
        match self {
            Library::Local(layout) => layout.create_root(),
            Library::Bucket { state_dir, .. } => create_dir(state_dir),
        }
    }

    /// Whether the catalog's directory may be written.
    pub fn is_writable(&self) -> bool {
        match self {
            Library::Local(layout) => layout.is_writable(),
            Library::Bucket { state_dir, .. } => LibraryLayout::new(state_dir).is_writable(),
        }
    }

    /// Path of the SQLite catalog index.
    pub fn catalog_path(&self) -> PathBuf {
        match self {
            Library::Local(layout) => layout.catalog_path(),
            Library::Bucket { state_dir, .. } => state_dir.join(CATALOG_FILE),
        }
    }

    /// Whether a committed record never changes (true in a bucket: records are written
    /// create-only), so an index need not read a record it already holds.
    pub fn records_are_immutable(&self) -> bool {
        matches!(self, Library::Bucket { .. })
    }

    /// Whether track `id` is complete in the library.
    pub fn has_track(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Library::Local(layout) => Ok(layout.has_track(id)),
            Library::Bucket { bucket, .. } => Ok(bucket.block_on(bucket.exists(&record_key(id)))?),
        }
    }

    /// Ids of the track directories, sorted (in a bucket: every track prefix, committed or
    /// not; [`Library::read_record`] tells).
    pub fn track_ids(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Library::Local(layout) => layout.track_ids(),
            Library::Bucket { bucket, .. } => {
                let mut ids = bucket.block_on(bucket.list_dirs(TRACKS_DIR))?;
                ids.retain(|id| is_track_id(id));
                ids.sort();
                Ok(ids)
            }
        }
    }

    /// The bytes of track `id`'s record; `None` if it is not (or no longer) there.
    pub fn read_record(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Library::Local(layout) => {
                let path = layout.track_dir(id).join(TRACK_RECORD_FILE);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(super::io_err("read", &path)(e)),
                }
            }
            Library::Bucket { bucket, .. } => Ok(bucket
                .block_on(bucket.get(&record_key(id)))?
                .map(|fetched| fetched.body.to_vec())),
        }
    }

    /// Starts writing track `id`.
    pub fn stage_track(&self, id: &str) -> Result<StagedTrack, StoreError> {
        match self {
            Library::Local(layout) => layout.stage_track(id),
            Library::Bucket { bucket, .. } => Ok(StagedTrack::in_bucket(bucket.clone(), id)),
        }
    }

    /// Removes what dead writers left in a local library's staging (nothing to do in a
    /// bucket: their objects are unreferenced, for `segue gc`).
    pub fn sweep_staging(&self) {
        if let Library::Local(layout) = self {
            layout.sweep_staging();
        }
    }
}

impl From<&LibraryLayout> for Library {
    fn from(layout: &LibraryLayout) -> Self {
        Library::Local(layout.clone())
    }
}

impl From<&Library> for Library {
    fn from(library: &Library) -> Self {
        library.clone()
    }
}

impl From<BucketError> for StoreError {
    fn from(e: BucketError) -> Self {
        StoreError::Bucket(Box::new(e))
    }
}

/// The key of track `id`'s record.
pub fn record_key(id: &str) -> String {
    format!("{TRACKS_DIR}/{id}/{TRACK_RECORD_FILE}")
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(super::io_err("create directory", dir))
}

/// `$XDG_CACHE_HOME/segue/<name>` (else `~/.cache/segue/<name>`, else the temp directory),
/// `<name>` from the bucket, prefix and a hash of the endpoint, so libraries never share one.
fn default_state_dir(url: &BucketUrl, endpoint: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let identity = format!("{endpoint}\n{url}");
    let hash = blake3::hash(identity.as_bytes()).to_hex();
    let prefix = url.prefix.replace('/', "_");
    base.join("segue")
        .join(format!("{}.{prefix}.{}", url.bucket, &hash[..12]))
}
