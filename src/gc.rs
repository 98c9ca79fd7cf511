//! `segue gc`: deletes the objects under `tracks/` that no committed track references, once
//! they are older than a grace period.
//!
//! In a bucket a track is committed by writing its record (`track.json`) last, so a killed or
//! failed ingest leaves objects that no record names: they are invisible, and only cost space.
//! The collection is three steps: list every object under `tracks/`, read every committed
//! record (listing first, so a record committed meanwhile is still read and protects what it
//! names), and delete what [`plan`] picks: an object no record references whose last change is
//! older than the grace period. The grace period is what keeps an ingest in flight safe: its
//! objects are young, and its record comes last.
//!
//! Safety over thoroughness: a record that exists but cannot be parsed protects everything under
//! its track, and a key that is not `tracks/<track id>/...` (something segue never writes) is
//! left alone. Nothing outside `tracks/` is ever listed, so nothing there is ever deleted.
//!
//! A track with no record is judged by its newest object, so an ingest that re-uses the
//! leftovers of an earlier killed ingest of the same file (its create-only puts find them and
//! leave their old dates) keeps them all by writing anything new. One race is left to the grace
//! period: a retry that finds every object in place writes nothing but its record, and a gc run
//! exactly then may delete what it is about to commit. That needs a leftover of a killed ingest,
//! complete but for its record, retried more than a day later during a gc run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;

use crate::catalog::TrackRecord;
use crate::store::bucket::Listed;
use crate::store::layout::{TRACK_RECORD_FILE, TRACKS_DIR, is_track_id};
use crate::store::{Library, StoreError};

/// Deletes sent to a bucket at once.
const DELETES_IN_FLIGHT: usize = 16;

/// Errors that stop a collection before it deletes anything.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// `--older-than` is not a number with a unit (`30s`, `15m`, `24h`, `7d`).
    #[error("bad age {text:?}: expected a whole number and a unit s, m, h or d (e.g. 24h)")]
    BadAge {
        /// What was given.
        text: String,
    },
    /// Listing the library or reading a record failed (the bucket is unusable, a directory
    /// unreadable): nothing was deleted. Recoverable by running again.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Walking the local tracks directory failed.
    #[error("list {path}: {source}")]
    Walk {
        /// The directory or file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Parses an age such as `30s`, `15m`, `24h` or `7d` (`0s` allowed).
pub fn parse_age(text: &str) -> Result<Duration, GcError> {
    let bad = || GcError::BadAge {
        text: text.to_string(),
    };
    let trimmed = text.trim();
    let split = trimmed.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = trimmed.split_at(split);
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = number.parse().map_err(|_| bad())?;
    count
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// A committed track as gc sees it: its record, or the fact that it has one that does not
/// parse (then everything under the track is kept).
#[derive(Debug, Clone)]
pub enum Committed {
    /// The record, parsed.
    Record(Box<TrackRecord>),
    /// A record exists but is not a readable [`TrackRecord`].
    Unreadable,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Objects to delete, sorted by key.
    pub delete: Vec<Listed>,
    /// Objects a committed record references (or under an unreadable record's track).
    pub referenced: usize,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub recent: usize,
    /// Keys under `tracks/` that segue does not write, left alone.
    pub foreign: usize,
}

/// Picks the objects to delete from `listing` (keys relative to the library root): those
/// under `tracks/<id>/` that no record in `committed` (by track id) references and whose last
/// change is more than `grace` before `now`. Pure: no I/O.
pub fn plan(
    listing: Vec<Listed>,
    committed: &BTreeMap<String, Committed>,
    now: SystemTime,
    grace: Duration,
) -> Plan {
    let mut referenced_keys = HashSet::new();
    for (id, state) in committed {
        if let Committed::Record(record) = state {
            referenced_keys.extend(
                record
                    .files()
                    .into_iter()
                    .map(|file| format!("{TRACKS_DIR}/{id}/{file}")),
            );
        }
    }
    // A track with no record yet is judged by its newest object: an ingest in flight that
    // re-uses the objects of an earlier killed one (its create-only puts find them and leave
    // their old dates) still writes new ones, and those keep the whole track.
    let mut newest: HashMap<String, SystemTime> = HashMap::new();
    for object in &listing {
        if let Some(id) = track_of(&object.key)
            && !committed.contains_key(id)
        {
            let latest = newest.entry(id.to_string()).or_insert(object.last_modified);
            *latest = (*latest).max(object.last_modified);
        }
    }
    let mut plan = Plan::default();
    for object in listing {
        let Some(id) = track_of(&object.key) else {
            plan.foreign += 1;
            continue;
        };
        if referenced_keys.contains(&object.key)
            || matches!(committed.get(id), Some(Committed::Unreadable))
        {
            plan.referenced += 1;
            continue;
        }
        let written = newest.get(id).copied().unwrap_or(object.last_modified);
        // A time in the future (clock skew) is an age of zero: kept.
        let age = now.duration_since(written).unwrap_or(Duration::ZERO);
        if age <= grace {
            plan.recent += 1;
            continue;
        }
        plan.delete.push(object);
    }
    plan.delete.sort_by(|a, b| a.key.cmp(&b.key));
    plan
}

/// The track id of `key` if it has the shape `tracks/<id>/<something>`.
fn track_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(TRACKS_DIR)?.strip_prefix('/')?;
    let (id, file) = rest.split_once('/')?;
    (is_track_id(id) && !file.is_empty()).then_some(id)
}

/// Every object under `tracks/` of `library`, keys relative to the library root. A local
/// library's stale staging directories are swept first (their own liveness lock decides).
pub fn list_objects(library: &Library) -> Result<Vec<Listed>, GcError> {
    match library {
        Library::Bucket { bucket, .. } => Ok(bucket
            .block_on(bucket.list_all(TRACKS_DIR))
            .map_err(StoreError::from)?),
        Library::Local(layout) => {
            layout.sweep_staging();
            let mut listing = Vec::new();
            walk(layout.root(), &layout.tracks_dir(), &mut listing)?;
            Ok(listing)
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Listed>) -> Result<(), GcError> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| GcError::Walk { path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(failed(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(failed(dir))?;
        let path = entry.path();
        // symlink_metadata: a link is an object of its own, never followed out of the library.
        let meta = std::fs::symlink_metadata(&path).map_err(failed(&path))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let key: Vec<_> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect();
        out.push(Listed {
            key: key.join("/"),
            size: meta.len(),
            last_modified: meta.modified().map_err(failed(&path))?,
        });
    }
    Ok(())
}

/// Reads the record of every track that has one in `listing`.
pub fn read_committed(
    library: &Library,
    listing: &[Listed],
) -> Result<BTreeMap<String, Committed>, GcError> {
    let mut committed = BTreeMap::new();
    for object in listing {
        let Some(id) = track_of(&object.key) else {
            continue;
        };
        if object.key != format!("{TRACKS_DIR}/{id}/{TRACK_RECORD_FILE}") {
            continue;
        }
        // Gone since the listing: no record, nothing protected by it (its objects are old).
        let Some(bytes) = library.read_record(id)? else {
            continue;
        };
        let state = match serde_json::from_slice::<TrackRecord>(&bytes) {
            Ok(record) => Committed::Record(Box::new(record)),
            Err(e) => {
                tracing::warn!("track {id}: unreadable record, its objects are kept: {e}");
                Committed::Unreadable
            }
        };
        committed.insert(id.to_string(), state);
    }
    Ok(committed)
}

/// The outcome of deleting one object.
#[derive(Debug)]
pub struct Deleted {
    /// The object.
    pub object: Listed,
    /// Why it could not be deleted, if it could not.
    pub error: Option<String>,
}

/// Deletes `objects` from `library` (several at once in a bucket); a local library's emptied
/// directories under `tracks/` go too. Every object is tried; failures are reported per object.
pub fn delete(library: &Library, objects: Vec<Listed>) -> Vec<Deleted> {
    match library {
        Library::Bucket { bucket, .. } => bucket.block_on(
            futures_util::stream::iter(objects)
                .map(|object| async move {
                    let error = bucket
                        .delete(&object.key)
                        .await
                        .err()
                        .map(|e| e.to_string());
                    Deleted { object, error }
                })
                .buffered(DELETES_IN_FLIGHT)
                .collect(),
        ),
        Library::Local(layout) => {
            let deleted: Vec<Deleted> = objects
                .into_iter()
                .map(|object| {
                    let path = layout.root().join(&object.key);
                    let error = match std::fs::remove_file(&path) {
                        Ok(()) => None,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => Some(format!("remove {}: {e}", path.display())),
                    };
                    Deleted { object, error }
                })
                .collect();
            for done in &deleted {
                remove_empty_parents(&layout.tracks_dir(), &layout.root().join(&done.object.key));
            }
            deleted
        }
    }
}

/// Removes the directories of `file` up to (not including) `top` while they are empty.
fn remove_empty_parents(top: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        // remove_dir fails on a non-empty directory: that ends the climb.
        if d == top || !d.starts_with(top) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
