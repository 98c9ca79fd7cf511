//! Where bytes live: the library directory and its atomic track staging.
//!
//! A track is written into a private staging directory under `<library>/.staging/` and moved
//! into `<library>/tracks/<id>` with one `rename(2)` only once every file is complete and synced,
//! so a reader (or a crash) never sees half a track. Staging directories left behind by a killed
//! process are swept on the next open.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File name of the SQLite catalog index at the library root.
pub const CATALOG_FILE: &str = "catalog.sqlite";
/// File name of the track record inside a track directory.
pub const TRACK_RECORD_FILE: &str = "track.json";

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
        self.root.join("tracks")
    }

    /// Directory of track `id`.
    pub fn track_dir(&self, id: &str) -> PathBuf {
        self.tracks_dir().join(id)
    }

    /// Directory holding in-progress tracks.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(".staging")
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

    /// Starts staging track `id` in a fresh private directory.
    pub fn stage_track(&self, id: &str) -> Result<StagedTrack, StoreError> {
        let staging = self.staging_dir();
        fs::create_dir_all(&staging).map_err(io_err("create directory", &staging))?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = staging.join(format!("{id}.{}.{nonce:x}", std::process::id()));
        fs::create_dir(&dir).map_err(io_err("create directory", &dir))?;
        Ok(StagedTrack {
            dir,
            target: self.track_dir(id),
            id: id.to_string(),
            committed: false,
        })
    }

    /// Removes staging directories whose owning process is gone (crash or kill leftovers).
    pub fn sweep_staging(&self) {
        let Ok(entries) = fs::read_dir(self.staging_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(process_alive);
            if !alive {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether this process may write `path`, as the kernel decides it (`access(2)` with `W_OK`:
/// a read-only mount gives `EROFS` even to root, unlike the permission bits).
fn may_write(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: access reads the NUL-terminated path we own and changes nothing.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether process `pid` is running. A zombie (killed, not yet reaped: in a container whose
/// init does not reap, it may stay so) has finished writing and counts as gone.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesized command name, which may itself hold ") ".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Whether `name` has the shape of a track id (lowercase hex), so stray files are ignored and
/// an id from a URL can never name a path outside the tracks directory.
pub fn is_track_id(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A track being written; removed on drop unless [`StagedTrack::commit`] moved it into place.
#[derive(Debug)]
pub struct StagedTrack {
    dir: PathBuf,
    target: PathBuf,
    id: String,
    committed: bool,
}

impl StagedTrack {
    /// The staging directory files are written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `bytes` to `relative` inside the staging directory, creating parent directories.
    pub fn write(&self, relative: impl AsRef<Path>, bytes: &[u8]) -> Result<(), StoreError> {
        write_file(&self.dir.join(relative), bytes)
    }

    /// Syncs every file and moves the track into the library in one rename.
    pub fn commit(mut self) -> Result<PathBuf, StoreError> {
        sync_tree(&self.dir)?;
        if self.target.exists() {
            return Err(StoreError::AlreadyExists(self.id.clone()));
        }
        fs::rename(&self.dir, &self.target)
            .map_err(io_err("move track into place", &self.target))?;
        if let Some(parent) = self.target.parent() {
            // Persist the rename itself.
            let _ = fs::File::open(parent).and_then(|d| d.sync_all());
        }
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for StagedTrack {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes a file, creating its parent directories.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    let mut file = fs::File::create(path).map_err(io_err("create file", path))?;
    file.write_all(bytes).map_err(io_err("write file", path))?;
    Ok(())
}

/// Writes a file atomically (temporary file in the same directory, then rename).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    write_file(&tmp, bytes)?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err("sync file", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename file", path))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_stage_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LibraryLayout::new(tmp.path());
        layout.create().unwrap();
        let staged = layout.stage_track("abc123").unwrap();
        staged.write("a/b.txt", b"x").unwrap();
        let dir = staged.dir().to_path_buf();
        drop(staged);
        assert!(!dir.exists());
        assert!(layout.track_ids().unwrap().is_empty());
    }

    #[test]
    fn committed_track_appears_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = LibraryLayout::new(tmp.path());
        layout.create().unwrap();
        let staged = layout.stage_track("abc123").unwrap();
        staged.write(TRACK_RECORD_FILE, b"{}").unwrap();
        staged.commit().unwrap();
        assert_eq!(layout.track_ids().unwrap(), vec!["abc123".to_string()]);
        let again = layout.stage_track("abc123").unwrap();
        again.write(TRACK_RECORD_FILE, b"{}").unwrap();
        assert!(matches!(again.commit(), Err(StoreError::AlreadyExists(_))));
    }

    #[test]
    fn track_ids_reject_path_like_names() {
        assert!(is_track_id("0123abcdef"));
        assert!(!is_track_id("../etc"));
        assert!(!is_track_id(""));
        assert!(!is_track_id("ABC"));
    }
}
