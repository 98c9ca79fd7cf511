//! Atomic staging of a track, and the sweep of staging left by dead writers.
//!
//! In a bucket library a track is uploaded as it is written and its record last
//! ([`super::upload`]); in a local library it is written into a private directory under `<library>/.staging/` and moved into
//! `<library>/tracks/<id>` with one `rename(2)` once every file is complete and synced, so a
//! reader (or a crash) never sees half a track.
//!
//! # Liveness by lock
//!
//! The writer holds an exclusive `flock(2)` on its staging directory (on a descriptor of the
//! directory itself) from just after creating it until it commits or drops it; the kernel
//! releases the lock when the process ends, however it ends (a worker killed by `SIGKILL`, an
//! abort). A sweeper takes the same lock, non-blocking: if it gets it, no process writes there
//! and the directory goes (removed while the sweeper holds the lock, so no writer can take it
//! over meanwhile); if not, the directory is live and stays. A pid in the name would prove
//! nothing: pids are reused. `flock` locks belong to the open file description, so a sweep in
//! the writer's own process sees the directory as live too, and the descriptor is opened
//! close-on-exec, so no child process inherits it.
//!
//! One window remains: between `mkdir` and `flock` a sweeper can lock and remove a directory
//! its writer has just made. The writer sees it (its `flock` fails, or the directory it locked
//! is no longer at its path) and starts again under a new name.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

use super::bucket::Bucket;
use super::layout::{self, INIT_SEGMENT_FILE};
use super::upload::Uploads;
use super::{StoreError, io_err};

/// How often a writer makes a new staging directory when sweepers keep taking them.
const STAGE_ATTEMPTS: u32 = 8;

/// Numbers the staging directories of this process, so their names never repeat.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A track being written: into a private staging directory moved into the library by
/// [`StagedTrack::commit`] (removed on drop otherwise), or into a bucket ([`super::upload`]).
#[derive(Debug)]
pub struct StagedTrack {
    id: String,
    sink: Sink,
}

#[derive(Debug)]
enum Sink {
    Dir(DirStage),
    Bucket(Uploads),
}

/// A staging directory of a local library.
#[derive(Debug)]
struct DirStage {
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
    /// The open directory whose `flock` says this staging is live; released when dropped
    /// (after [`Drop::drop`] removed the directory, so no sweeper races the removal).
    _lock: fs::File,
}

/// One rendition being written into a [`StagedTrack`], under the directory name it will keep.
#[derive(Debug)]
pub struct StagedRendition {
    name: String,
}

impl StagedTrack {
    /// Makes and locks a fresh staging directory in `staging` for track `id`, to be moved to
    /// `target` on commit.
    pub(super) fn create(staging: &Path, id: &str, target: PathBuf) -> Result<Self, StoreError> {
        fs::create_dir_all(staging).map_err(io_err("create directory", staging))?;
        for _ in 0..STAGE_ATTEMPTS {
            let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            let name = layout::staging_name(id, std::process::id(), sequence);
            let dir = staging.join(name);
            match fs::create_dir(&dir) {
                // A leftover of a dead process whose pid was ours: the next number is free.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                created => created.map_err(io_err("create directory", &dir))?,
            }
            // `None`: a sweeper took the directory before we locked it; start again.
            if let Some(lock) = lock_dir(&dir).map_err(io_err("lock directory", &dir))? {
                let stage = DirStage {
                    dir,
                    target,
                    committed: false,
                    _lock: lock,
                };
                return Ok(StagedTrack {
                    id: id.to_string(),
                    sink: Sink::Dir(stage),
                });
            }
        }
        Err(StoreError::Io {
            op: "lock a staging directory",
            path: staging.to_path_buf(),
            source: io::ErrorKind::WouldBlock.into(),
        })
    }

    /// Starts writing track `id` into `bucket`.
    pub(super) fn in_bucket(bucket: Bucket, id: &str) -> Self {
        StagedTrack {
            id: id.to_string(),
            sink: Sink::Bucket(Uploads::new(bucket, id)),
        }
    }

    /// The staging directory files are written into (`None` for a bucket).
    pub fn dir(&self) -> Option<&Path> {
        match &self.sink {
            Sink::Dir(stage) => Some(&stage.dir),
            Sink::Bucket(_) => None,
        }
    }

    /// Writes `bytes` as the track's file `relative` (a `/`-separated name inside the track
    /// directory), creating parent directories.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match &self.sink {
            Sink::Dir(stage) => write_file(&stage.dir.join(relative), bytes),
            Sink::Bucket(uploads) => uploads.put(relative, bytes),
        }
    }

    /// Starts rendition `rendition_id`, whose bytes are decided by inputs hashing to `inputs`
    /// ([`layout::rendition_dir`]): its directory name is known before any byte is written, so
    /// each segment goes to its final key as soon as it is encoded.
    pub fn begin_rendition(
        &self,
        rendition_id: &str,
        inputs: &blake3::Hash,
    ) -> Result<StagedRendition, StoreError> {
        let name = layout::rendition_dir(rendition_id, inputs);
        if let Sink::Dir(stage) = &self.sink {
            let dir = stage.dir.join(&name);
            fs::create_dir(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(StagedRendition { name })
    }

    /// Writes media segment `index` (0-based) of `rendition`.
    pub fn put_segment(
        &self,
        rendition: &StagedRendition,
        index: usize,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let relative = format!("{}/{}", rendition.name, layout::segment_name(index));
        match &self.sink {
            Sink::Dir(stage) => write_new_file(&stage.dir.join(relative), bytes),
            Sink::Bucket(uploads) => uploads.put(&relative, bytes),
        }
    }

    /// Writes the init segment of `rendition`; returns its directory name, relative to the
    /// track directory.
    pub fn finish_rendition(
        &self,
        rendition: StagedRendition,
        init: &[u8],
    ) -> Result<String, StoreError> {
        self.write(&format!("{}/{INIT_SEGMENT_FILE}", rendition.name), init)?;
        Ok(rendition.name)
    }

    /// Makes the track visible, whole, at once: a directory is synced and moved into the
    /// library in one rename; in a bucket the record is written last, create-only.
    /// [`StoreError::AlreadyExists`] when another writer committed the track first.
    pub fn commit(mut self) -> Result<(), StoreError> {
        match &mut self.sink {
            Sink::Dir(stage) => stage.commit(&self.id),
            Sink::Bucket(uploads) => uploads.commit(),
        }
    }
}

impl DirStage {
    fn commit(&mut self, id: &str) -> Result<(), StoreError> {
        sync_tree(&self.dir)?;
        if self.target.exists() {
            return Err(StoreError::AlreadyExists(id.to_string()));
        }
        // Still locked: no sweeper can take the directory between the checks and the rename.
        fs::rename(&self.dir, &self.target)
            .map_err(io_err("move track into place", &self.target))?;
        if let Some(parent) = self.target.parent() {
            // Persist the rename itself.
            let _ = fs::File::open(parent).and_then(|d| d.sync_all());
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for DirStage {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes every staging directory under `staging` that no live process holds locked (the
/// leftovers of a crash or a kill); live ones stay.
pub(super) fn sweep(staging: &Path) {
    let Ok(entries) = fs::read_dir(staging) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        match lock_dir(&dir) {
            // Removed while locked, so its writer (if it is just starting) cannot take it.
            Ok(Some(_lock)) => {
                if let Err(error) = fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), %error, "stale staging not removed");
                }
            }
            Ok(None) => {} // live, or gone already
            Err(error) => tracing::warn!(dir = %dir.display(), %error, "staging not checked"),
        }
    }
}

/// Takes the exclusive lock of directory `dir` without waiting: `Some(handle)` holding it,
/// `None` if another open holds it or `dir` is gone (also if it went while we locked it).
fn lock_dir(dir: &Path) -> io::Result<Option<fs::File>> {
    let handle = match fs::File::open(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        opened => opened?,
    };
    match flock(&handle, FlockOperation::NonBlockingLockExclusive) {
        Err(Errno::WOULDBLOCK) => return Ok(None),
        locked => locked?,
    }
    // A sweeper may have removed the directory (holding the lock) between our open and flock.
    let held = handle.metadata()?;
    let here = match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        found => found?,
    };
    let same = held.nlink() > 0 && held.dev() == here.dev() && held.ino() == here.ino();
    Ok(same.then_some(handle))
}

/// Writes a file, creating its parent directories.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    write_new_file(path, bytes)
}

/// Writes a file whose directory exists.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = fs::File::create(path).map_err(io_err("create file", path))?;
    file.write_all(bytes).map_err(io_err("write file", path))
}

fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let entry = entry.map_err(io_err("read directory", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("stat", &path))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        }
        fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &path))?;
    }
    Ok(())
}
