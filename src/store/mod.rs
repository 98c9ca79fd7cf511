//! Where bytes live: a [`Library`] in a local directory or an S3-compatible [`bucket`]
//! (named by a [`location`]), its [`layout`] (every name and id format, the same in both), and
//! the atomic [`staging`] of tracks (uploads to a bucket: [`upload`]).
//!
//! A track is written into a private staging directory and moved into the library with one
//! `rename(2)` only once every file is complete and synced, so a reader (or a crash) never
//! sees half a track. Only this module creates and renames directories of the library.
//! Staging directories left behind by a killed process are swept on the next open.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub mod bucket;
mod bucket_types;
pub mod layout;
pub mod library;
pub mod location;
pub mod staging;
pub mod upload;

pub use bucket::{Bucket, BucketError};
pub use layout::{CATALOG_FILE, TRACK_RECORD_FILE, is_track_id};
pub use library::Library;
pub use location::{BucketUrl, LibraryLocation};
pub use staging::{StagedRendition, StagedTrack};

/// Errors of the store layer; none are recoverable by retrying the same call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A library directory cannot be written: a read-only mount, or no permission. Checked
    /// before any work, so a command that must write fails up front and changes nothing.
    #[error("{path} is not writable ({source}); this command must write to the library")]
    NotWritable {
        /// The directory or file that cannot be written.
        path: PathBuf,
        /// The OS error (`EROFS`, `EACCES`...).
        #[source]
        source: io::Error,
    },
    /// The track is already in the library (another ingest finished it first).
    #[error("track {0} already exists in the library")]
    AlreadyExists(String),
    /// A bucket request failed, or the bucket is not usable.
    #[error(transparent)]
    Bucket(Box<BucketError>),
    /// An upload into the bucket failed (the first failure's message).
    #[error("upload: {0}")]
    Upload(String),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// The on-disk layout of a library directory.
#[derive(Debug, Clone)]
pub struct LibraryLayout {
    root: PathBuf,
}

impl LibraryLayout {
    /// A layout rooted at `root` (nothing is created until [`LibraryLayout::create`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the library root if missing (and nothing else: for the catalog's database).
    pub fn create_root(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.root).map_err(io_err("create directory", &self.root))
    }

    /// Creates the library directories if missing and sweeps stale staging directories.
    pub fn create(&self) -> Result<(), StoreError> {
        for dir in [self.root.clone(), self.tracks_dir(), self.staging_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        self.sweep_staging();
        Ok(())
    }

    /// Fails with [`StoreError::NotWritable`] unless this process may write the library root,
    /// the tracks and staging directories and the catalog file (when they exist).
    pub fn ensure_writable(&self) -> Result<(), StoreError> {
        let paths = [
            self.root.clone(),
            self.tracks_dir(),
            self.staging_dir(),
            self.catalog_path(),
        ];
        for path in paths.iter().filter(|p| p.exists()) {
            may_write(path).map_err(|source| StoreError::NotWritable {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Whether [`LibraryLayout::ensure_writable`] passes.
    pub fn is_writable(&self) -> bool {
        self.ensure_writable().is_ok()
    }

    /// The library root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding one subdirectory per track.
    pub fn tracks_dir(&self) -> PathBuf {
        self.root.join(layout::TRACKS_DIR)
    }

    /// Directory of track `id`.
    pub fn track_dir(&self, id: &str) -> PathBuf {
        self.tracks_dir().join(id)
    }

    /// Directory holding in-progress tracks.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(layout::STAGING_DIR)
    }

    /// Path of the SQLite catalog index.
    pub fn catalog_path(&self) -> PathBuf {
        self.root.join(CATALOG_FILE)
    }

    /// Whether track `id` is complete in the library.
    pub fn has_track(&self, id: &str) -> bool {
        self.track_dir(id).join(TRACK_RECORD_FILE).is_file()
    }

    /// Ids of every complete track directory, sorted.
    pub fn track_ids(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.tracks_dir();
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            if let Some(name) = entry.file_name().to_str()
                && is_track_id(name)
                && self.has_track(name)
            {
                ids.push(name.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Starts staging track `id` in a fresh private directory, locked by this process.
    pub fn stage_track(&self, id: &str) -> Result<StagedTrack, StoreError> {
        StagedTrack::create(&self.staging_dir(), id, self.track_dir(id))
    }

    /// Removes the staging directories no live process holds (crash or kill leftovers).
    pub fn sweep_staging(&self) {
        staging::sweep(&self.staging_dir());
    }
}

/// Whether this process may write `path`, as the kernel decides it (`access(2)` with `W_OK`:
/// a read-only mount gives `EROFS` even to root, unlike the permission bits).
fn may_write(path: &Path) -> io::Result<()> {
    Ok(rustix::fs::access(path, rustix::fs::Access::WRITE_OK)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabb";

    fn library() -> (tempfile::TempDir, LibraryLayout) {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LibraryLayout::new(tmp.path());
        layout.create().unwrap();
        (tmp, layout)
    }

    fn staging_entries(layout: &LibraryLayout) -> usize {
        fs::read_dir(layout.staging_dir()).unwrap().count()
    }

    #[test]
    fn uncommitted_stage_leaves_nothing_behind() {
        let (_tmp, layout) = library();
        let staged = layout.stage_track(ID).unwrap();
        staged.write("a/b.txt", b"x").unwrap();
        let dir = staged.dir().unwrap().to_path_buf();
        drop(staged);
        assert!(!dir.exists());
        assert!(layout.track_ids().unwrap().is_empty());
    }

    #[test]
    fn committed_track_appears_whole() {
        let (_tmp, layout) = library();
        let staged = layout.stage_track(ID).unwrap();
        staged.write(TRACK_RECORD_FILE, b"{}").unwrap();
        staged.commit().unwrap();
        assert_eq!(layout.track_ids().unwrap(), vec![ID.to_string()]);
        assert_eq!(staging_entries(&layout), 0);
        let again = layout.stage_track(ID).unwrap();
        again.write(TRACK_RECORD_FILE, b"{}").unwrap();
        assert!(matches!(again.commit(), Err(StoreError::AlreadyExists(_))));
    }

    #[test]
    fn rendition_directory_is_named_after_its_inputs() {
        let (_tmp, layout) = library();
        let staged = layout.stage_track(ID).unwrap();
        let hash = blake3::hash(b"inputs");
        let rendition = staged.begin_rendition("aac-lc-128k", &hash).unwrap();
        staged.put_segment(&rendition, 0, b"one").unwrap();
        staged.put_segment(&rendition, 1, b"two").unwrap();
        let dir = staged.finish_rendition(rendition, b"init").unwrap();
        assert_eq!(dir, layout::rendition_dir("aac-lc-128k", &hash));
        let files = staged.dir().unwrap().join(&dir);
        let names = ["1.m4s", "2.m4s", layout::INIT_SEGMENT_FILE];
        assert!(names.iter().all(|n| files.join(n).is_file()));
        assert_eq!(fs::read_dir(staged.dir().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn sweep_keeps_locked_staging_and_removes_unlocked() {
        let (_tmp, layout) = library();
        let live = layout.stage_track(ID).unwrap();
        // A leftover named after a running process (ours): a pid check would keep it.
        let name = layout::staging_name(ID, std::process::id(), u32::MAX);
        let dead = layout.staging_dir().join(name);
        fs::create_dir_all(dead.join("aac-lc-128k.partial")).unwrap();
        layout.sweep_staging();
        assert!(
            live.dir().unwrap().is_dir(),
            "a live staging directory was swept"
        );
        assert!(!dead.exists(), "an unlocked staging directory stayed");
        drop(live);
        assert_eq!(staging_entries(&layout), 0);
    }

    #[test]
    fn track_ids_ignore_other_names() {
        let (_tmp, layout) = library();
        for name in [ID, "abc123", "00112233445566778899AABB"] {
            let dir = layout.track_dir(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(TRACK_RECORD_FILE), b"{}").unwrap();
        }
        assert_eq!(layout.track_ids().unwrap(), vec![ID.to_string()]);
    }
}
