//! A bounded on-disk cache of immutable objects, between the memory cache and the bucket.
//!
//! Each object is one file named by the blake3 hex of its key, in a two-level fan-out
//! (`ab/cd/abcd…`), so no key is ever used as a path and no directory grows huge. A file is
//! a fixed header (magic, format version, key length, body length, blake3 of the body), the key,
//! then the body. Reading checks all of it: a truncated, flipped or renamed file (or a hash
//! collision between keys) is found, deleted and reported as a miss, so the caller refetches
//! instead of serving bad bytes. Nothing is fsynced: a file torn by a power cut fails that check.
//!
//! Writes go to a temp file beside the target and are renamed into place, so a crash leaves at
//! most a `*.tmp` file, which [`DiskCache::open`] removes. Recency is kept in memory and mirrored
//! in each file's mtime (set on write and on every hit), so a restart rebuilds the same
//! least-recently-used order from a directory scan without reading any file.
//!
//! Locking: the index lives behind one mutex. Reading and writing file contents happens outside
//! it; every change to the directory's names (rename into place, unlink of a victim or a corrupt
//! file) happens under it. Those are short metadata calls, and holding the lock for them keeps
//! the index exactly in step with the directory: otherwise an eviction could unlink a file that a
//! concurrent `put` of the same key had just renamed into place, leaving the index counting a
//! file that is gone. An exclusive `flock(2)` on `LOCK` keeps a second process off the directory,
//! since two indexes over one directory would each miscount the bound.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use format::{HEADER_LEN, verify};
use rustix::fs::{FlockOperation, flock};
use scan::scan;

/// Suffix of files being written; any found by `open` are leftovers of a crash.
const TEMP_SUFFIX: &str = ".tmp";
/// The file whose `flock` marks the directory as in use.
const LOCK_FILE: &str = "LOCK";

/// An error of the disk cache. None is fatal to serving: a caller can log it and go on
/// without the disk cache (`open`) or without storing that object (`put`).
#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    /// The cache directory (or a fan-out directory in it) could not be created.
    #[error("cannot create cache directory {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The directory is locked by another process (or another `DiskCache` in this one).
    #[error("cannot lock cache directory {dir} (is another segue using it?): {source}")]
    Lock {
        /// The cache directory.
        dir: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// Listing the existing entries failed.
    #[error("cannot scan cache directory {dir}: {source}")]
    Scan {
        /// The directory being listed.
        dir: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// Writing or renaming a cache file failed (disk full, permissions); nothing was stored.
    #[error("cannot write cache file {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The key does not fit the header's 32-bit length field.
    #[error("cache key of {len} bytes is too long")]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
    },
}

/// Counters of a [`DiskCache`], for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCacheStats {
    /// Objects stored now.
    pub entries: u64,
    /// Bytes on disk now (whole files: header, key and body).
    pub bytes: u64,
    /// `get`s answered from disk.
    pub hits: u64,
    /// `get`s not answered (absent, unreadable or corrupt).
    pub misses: u64,
    /// Files found corrupt (and deleted) by `get`.
    pub corrupt: u64,
    /// Files deleted to stay within the bound.
    pub evictions: u64,
}

/// The blake3 of a key: the file name of its entry.
type Name = [u8; 32];

/// What the index knows of one file.
struct Entry {
    /// Size of the whole file, in bytes.
    size: u64,
    /// Recency stamp, in nanoseconds since the Unix epoch (unique; also the file's mtime).
    stamp: u64,
}

/// The in-memory view of the directory, with the LRU order and the counters.
#[derive(Default)]
struct Index {
    entries: HashMap<Name, Entry>,
    /// Stamp -> name, oldest first.
    lru: BTreeMap<u64, Name>,
    bytes: u64,
    last_stamp: u64,
    stats: DiskCacheStats,
}

impl Index {
    /// A stamp later than every stamp given so far: the wall clock, pushed forward on ties or
    /// when the clock went back (so the order survives both coarse clocks and a restart).
    fn next_stamp(&mut self, at_least: u64) -> u64 {
        self.last_stamp = at_least.max(self.last_stamp.saturating_add(1));
        self.last_stamp
    }

    fn insert(&mut self, name: Name, size: u64, stamp: u64) {
        self.remove(&name);
        self.entries.insert(name, Entry { size, stamp });
        self.lru.insert(stamp, name);
        self.bytes += size;
    }

    fn remove(&mut self, name: &Name) -> Option<Entry> {
        let entry = self.entries.remove(name)?;
        self.lru.remove(&entry.stamp);
        self.bytes = self.bytes.saturating_sub(entry.size);
        Some(entry)
    }

    /// Marks `name` as just used; its new stamp, or `None` when it is not indexed.
    fn touch(&mut self, name: &Name) -> Option<u64> {
        if !self.entries.contains_key(name) {
            return None;
        }
        let stamp = self.next_stamp(now_nanos());
        let entry = self.entries.get_mut(name)?;
        self.lru.remove(&entry.stamp);
        entry.stamp = stamp;
        self.lru.insert(stamp, *name);
        Some(stamp)
    }

    /// Removes and returns the least recently used entry.
    fn pop_oldest(&mut self) -> Option<Name> {
        let (_, name) = self.lru.pop_first()?;
        if let Some(entry) = self.entries.remove(&name) {
            self.bytes = self.bytes.saturating_sub(entry.size);
        }
        Some(name)
    }
}

/// A verified entry: its body, and the open file it was read from.
#[derive(Debug)]
pub struct Stored {
    /// The body.
    pub body: Bytes,
    /// The cache file, open.
    pub file: File,
    /// Where the body starts in the file.
    pub body_offset: u64,
}

/// A bounded, restart-safe, self-verifying cache of immutable objects in a local directory.
///
/// All methods do blocking I/O: call them from `spawn_blocking` in async code.
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// Makes temp file names unique within this process.
    temp_seq: AtomicU64,
    /// Holds the directory's `flock` for the life of the cache.
    _lock: File,
}

impl DiskCache {
    /// Opens (creating it if needed) the cache in `dir`, bounded to `max_bytes` bytes on disk.
    ///
    /// Entries of a previous run are kept, in their old recency order; leftover temp files are
    /// deleted, and the oldest entries are evicted down to the bound.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<DiskCache, DiskCacheError> {
        fs::create_dir_all(dir).map_err(|source| DiskCacheError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let lock_error = |source| DiskCacheError::Lock {
            dir: dir.to_owned(),
            source,
        };
        let lock = File::options()
            .create(true)
            .append(true)
            .open(dir.join(LOCK_FILE))
            .map_err(lock_error)?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive)
            .map_err(|errno| lock_error(errno.into()))?;

        let mut found = scan(dir)?;
        // Oldest first; the name breaks ties so the order is the same on every open.
        found.sort_by_key(|&(name, _, mtime)| (mtime, name));
        let mut index = Index::default();
        for (name, size, mtime) in found {
            let stamp = index.next_stamp(mtime);
            index.insert(name, size, stamp);
        }
        let cache = DiskCache {
            dir: dir.to_owned(),
            max_bytes,
            index: Mutex::new(index),
            temp_seq: AtomicU64::new(0),
            _lock: lock,
        };
        cache.evict(&mut cache.lock_index());
        Ok(cache)
    }

    /// The body stored under `key`, verified; `None` when absent, unreadable or corrupt (a
    /// corrupt file is deleted and counted). A hit makes the entry the most recently used.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.get_file(key).map(|stored| stored.body)
    }

    /// [`DiskCache::get`], with the open file the body was read from and where in it the body
    /// starts, so a server can send the body from the file ([`super::zerocopy`]): cache files
    /// are only ever replaced by a rename, never written in place.
    pub fn get_file(&self, key: &str) -> Option<Stored> {
        let name = name_of(key);
        let path = self.path_of(&name);
        let (file, raw) = match read_file(&path) {
            Ok(read) => read,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %error, "disk cache file unreadable");
                }
                let mut index = self.lock_index();
                index.stats.misses += 1;
                // Names change only under the lock, so this check is current: drop an entry
                // whose file was removed behind our back.
                if fs::symlink_metadata(&path).is_err() {
                    index.remove(&name);
                }
                return None;
            }
        };
        match verify(key, raw) {
            Ok(body) => {
                let stamp = {
                    let mut index = self.lock_index();
                    index.stats.hits += 1;
                    index.touch(&name)
                };
                if let Some(stamp) = stamp {
                    set_mtime(&file, &path, stamp);
                }
                let body_offset = (HEADER_LEN + key.len()) as u64;
                Some(Stored {
                    body,
                    file,
                    body_offset,
                })
            }
            Err(defect) => {
                tracing::warn!(key, path = %path.display(), %defect, "corrupt disk cache file; deleting it");
                let mut index = self.lock_index();
                index.stats.misses += 1;
                index.stats.corrupt += 1;
                // Delete only the file we read: a concurrent `put` may have renamed a good one
                // into its place since.
                let same_file = match (file.metadata(), fs::symlink_metadata(&path)) {
                    (Ok(read), Ok(now)) => (read.dev(), read.ino()) == (now.dev(), now.ino()),
                    _ => false,
                };
                if same_file {
                    remove_file(&path);
                    index.remove(&name);
                }
                None
            }
        }
    }

    /// Stores `body` under `key` (replacing any entry), then evicts the least recently used
    /// entries down to the bound. An object whose file would exceed the bound is not stored.
    pub fn put(&self, key: &str, body: &[u8]) -> Result<(), DiskCacheError> {
        let key_len =
            u32::try_from(key.len()).map_err(|_| DiskCacheError::KeyTooLong { len: key.len() })?;
        let size = (HEADER_LEN + key.len()) as u64 + body.len() as u64;
        if size > self.max_bytes {
            tracing::debug!(
                key,
                size,
                max = self.max_bytes,
                "object larger than the disk cache; not stored"
            );
            return Ok(());
        }
        let name = name_of(key);
        let path = self.path_of(&name);
        let leaf = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(leaf).map_err(|source| DiskCacheError::CreateDir {
            dir: leaf.to_owned(),
            source,
        })?;
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = leaf.join(format!(
            "{}.{}.{seq}{TEMP_SUFFIX}",
            blake3::Hash::from(name).to_hex(),
            std::process::id()
        ));
        let file = write_temp(&temp, key, key_len, body).map_err(|source| {
            remove_file(&temp);
            DiskCacheError::Write {
                path: temp.clone(),
                source,
            }
        })?;

        let stamp = {
            let mut index = self.lock_index();
            if let Err(source) = fs::rename(&temp, &path) {
                drop(index);
                remove_file(&temp);
                return Err(DiskCacheError::Write { path, source });
            }
            let stamp = index.next_stamp(now_nanos());
            index.insert(name, size, stamp);
            self.evict(&mut index);
            stamp
        };
        // The handle still names the renamed file: its mtime records the entry's recency.
        set_mtime(&file, &path, stamp);
        Ok(())
    }

    /// The current counters.
    pub fn stats(&self) -> DiskCacheStats {
        let index = self.lock_index();
        DiskCacheStats {
            entries: index.entries.len() as u64,
            bytes: index.bytes,
            ..index.stats
        }
    }

    /// Deletes least recently used entries until the total is within the bound.
    fn evict(&self, index: &mut MutexGuard<'_, Index>) {
        while index.bytes > self.max_bytes {
            let Some(name) = index.pop_oldest() else {
                break;
            };
            remove_file(&self.path_of(&name));
            index.stats.evictions += 1;
        }
    }

    /// The index, even if a thread panicked holding it: every update leaves it consistent
    /// before anything that could panic.
    fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the entry `name` lives: `dir/ab/cd/abcd…`.
    fn path_of(&self, name: &Name) -> PathBuf {
        let hex = blake3::Hash::from(*name).to_hex();
        self.dir
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(hex.as_str())
    }
}

/// The file name of `key`'s entry.
fn name_of(key: &str) -> Name {
    *blake3::hash(key.as_bytes()).as_bytes()
}

fn now_nanos() -> u64 {
    nanos(SystemTime::now())
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Records `stamp` as the file's mtime, for the next `open`. Best effort: a failure only
/// blurs the recency order after a restart.
fn set_mtime(file: &File, path: &Path, stamp: u64) {
    if let Err(error) = file.set_modified(UNIX_EPOCH + Duration::from_nanos(stamp)) {
        tracing::debug!(path = %path.display(), %error, "cannot set disk cache file mtime");
    }
}

/// Deletes a file we no longer want; one already gone is fine, other failures are logged.
fn remove_file(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot delete disk cache file")
        }
    }
}

fn read_file(path: &Path) -> io::Result<(File, Vec<u8>)> {
    let mut file = File::open(path)?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw)?;
    Ok((file, raw))
}

fn write_temp(temp: &Path, key: &str, key_len: u32, body: &[u8]) -> io::Result<File> {
    let mut file = File::create_new(temp)?;
    file.write_all(&format::head(key, key_len, body))?;
    file.write_all(body)?;
    Ok(file)
}

#[path = "disk_cache_scan.rs"]
mod scan;

#[path = "disk_cache_format.rs"]
mod format;

#[cfg(test)]
#[path = "disk_cache_tests.rs"]
mod tests;
