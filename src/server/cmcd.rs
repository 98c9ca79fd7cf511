//! Common Media Client Data (CTA-5004): what players say about themselves on each request, read
//! by the origin to count sessions, buffer levels and throughput, and to warm the object a
//! player says it will ask for next (`nor`).
//!
//! A player sends CMCD either as one query argument, `CMCD=<url-encoded payload>` (CTA-5004
//! 2.2: hls.js and dash.js by default), or split over four headers, `CMCD-Request`,
//! `CMCD-Object`, `CMCD-Status` and `CMCD-Session` (CTA-5004 2.1). A payload is a
//! comma-separated list of `key=value` pairs (CTA-5004 3.2): integers, decimals, tokens, strings
//! in double quotes with `\"` and `\\` escapes, and a key alone for a true boolean.
//!
//! The parser is strict and total: the first thing it does not expect (an overlong payload, a
//! bad percent escape, a duplicate key, a number that does not fit, a control character) makes
//! the whole payload invalid, and an invalid payload is only counted. CMCD is advice: it never
//! refuses a request, and never changes a response's bytes, validators or cacheability (those
//! are built before and without it).
//!
//! `nor` (next object request, CTA-5004 3.3: a URL-encoded path relative to the request URL) is
//! resolved here without touching the filesystem, and only a file of a rendition directory of
//! the same track is warmed, through [`FileStore::load`] (the hot-file cache, and for a bucket
//! library its disk cache), as the prefetch flow warms ([`super::prefetch`]). The track's token,
//! when URLs are signed, was valid for the whole track, so warming one of its files reveals
//! nothing the player could not fetch. At most [`MAX_WARMS`] warm-ups run at once; more are
//! dropped, never queued.

pub mod metrics;
pub mod parse;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use tokio::sync::Semaphore;

use super::files::FileStore;
use super::metrics::Metrics;
use super::paths::MediaPath;
pub use parse::{Cmcd, CmcdError, MAX_PAYLOAD_BYTES, Transmission, from_request, parse};

/// Warm-ups of `nor` objects running at once, at most.
pub const MAX_WARMS: usize = 4;
/// Sessions remembered at once, at most: beyond it new ones are not counted until old expire.
pub const MAX_SESSIONS: usize = 10_000;
/// How long a session counts as recent after its last request.
pub const SESSION_WINDOW: Duration = Duration::from_secs(300);

/// The file `nor` names, resolved against the request's file `from` (a path in the track
/// directory of `track_id`; RFC 3986 5.2, for the
/// path-only references players send), if it is an immutable file of the same track: `None`
/// for an absolute or network path, a query or fragment, a percent sign left after the one
/// decoding, a `..` that leaves the track, or a name the ingest never writes.
pub fn resolve_next(track_id: &str, from: &str, nor: &str) -> Option<MediaPath> {
    if nor.is_empty()
        || nor.starts_with('/')
        || nor.contains(['?', '#', '%', '\\', ':'])
        || nor.len() > MAX_PAYLOAD_BYTES
    {
        return None;
    }
    let mut segments: Vec<&str> = from.split('/').collect();
    segments.pop();
    for segment in nor.split('/') {
        match segment {
            "." => {}
            // Popping past the track directory leaves the track: refused, not clamped.
            ".." => drop(segments.pop()?),
            name => segments.push(name),
        }
    }
    MediaPath::parse(track_id, &segments.join("/")).filter(|next| next.immutable)
}

/// The sessions seen recently, by a keyed hash of their `sid` (so a hostile `sid` cannot choose
/// collisions, and memory per session is fixed).
#[derive(Debug)]
struct Sessions {
    last_seen: HashMap<u64, Instant>,
    hasher: RandomState,
    /// When expired sessions were last dropped.
    pruned: Instant,
}

/// How often expired sessions are dropped (a pass over at most [`MAX_SESSIONS`] entries).
const PRUNE_EVERY: Duration = Duration::from_secs(10);

impl Sessions {
    /// No session seen yet.
    fn new(now: Instant) -> Self {
        Sessions {
            last_seen: HashMap::new(),
            hasher: RandomState::new(),
            pruned: now,
        }
    }

    /// Notes `sid` at `now`; returns how many sessions are recent (seen within
    /// [`SESSION_WINDOW`], give or take [`PRUNE_EVERY`]).
    fn note(&mut self, sid: &str, now: Instant) -> usize {
        let key = self.hasher.hash_one(sid);
        // Not on every new session while full: a flood of fresh `sid`s would make each request
        // a pass over the whole map. Until the next pass they are simply not counted.
        if now.saturating_duration_since(self.pruned) >= PRUNE_EVERY {
            self.last_seen
                .retain(|_, seen| now.saturating_duration_since(*seen) < SESSION_WINDOW);
            self.pruned = now;
        }
        if self.last_seen.len() < MAX_SESSIONS || self.last_seen.contains_key(&key) {
            self.last_seen.insert(key, now);
        }
        self.last_seen.len()
    }
}

/// Reads the CMCD of media requests into the metrics and warms their `nor` objects.
#[derive(Debug)]
pub struct CmcdObserver {
    metrics: Arc<Metrics>,
    files: Arc<FileStore>,
    sessions: Mutex<Sessions>,
    warms: Arc<Semaphore>,
}

impl CmcdObserver {
    /// An observer counting in `metrics` and warming through `files`.
    pub fn new(metrics: Arc<Metrics>, files: Arc<FileStore>) -> Self {
        CmcdObserver {
            metrics,
            files,
            sessions: Mutex::new(Sessions::new(Instant::now())),
            warms: Arc::new(Semaphore::new(MAX_WARMS)),
        }
    }

    /// Observes the CMCD of a request for the file `relative` of track `track_id` (the parts
    /// of a valid [`MediaPath`]), with the request's raw `query` and `headers`, if it has any:
    /// counts it, and warms its `nor` in the background.
    pub fn observe(
        &self,
        track_id: &str,
        relative: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) {
        let Some((transmission, cmcd)) = from_request(query, headers) else {
            return;
        };
        let cmcd = match cmcd {
            Ok(cmcd) => cmcd,
            Err(e) => {
                tracing::debug!(error = %e, "CMCD ignored");
                self.metrics.cmcd().request(transmission.label(), "invalid");
                return;
            }
        };
        self.metrics.cmcd().request(transmission.label(), "valid");
        if let Some(bl) = cmcd.bl {
            self.metrics.cmcd().buffer_length(bl);
        }
        if let Some(mtp) = cmcd.mtp {
            self.metrics.cmcd().throughput(mtp);
        }
        if let Some(sid) = &cmcd.sid {
            // A poisoned lock only means a panic elsewhere while holding it; the map is valid.
            let recent = self
                .sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .note(sid, Instant::now());
            self.metrics.cmcd().set_sessions(recent);
        }
        if let Some(nor) = &cmcd.nor {
            self.warm(track_id, relative, nor);
        }
    }

    /// Loads the file `nor` names into the caches, if it is one of the track's and a warm-up
    /// slot is free.
    fn warm(&self, track_id: &str, from: &str, nor: &str) {
        let Some(next) = resolve_next(track_id, from, nor) else {
            self.metrics.cmcd().warm("refused");
            return;
        };
        let (Ok(permit), Ok(runtime)) = (
            Arc::clone(&self.warms).try_acquire_owned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            self.metrics.cmcd().warm("busy");
            return;
        };
        let (files, metrics) = (Arc::clone(&self.files), Arc::clone(&self.metrics));
        runtime.spawn(async move {
            let outcome = match files.load(next).await {
                Ok(_) => "warmed",
                Err(_) => "failed",
            };
            metrics.cmcd().warm(outcome);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7dea392de05ff128da4c3c57";
    const DIR: &str = "aac-lc-128k.b75947318374";

    #[test]
    fn nor_resolves_only_to_files_of_the_same_track() {
        let from = format!("{DIR}/3.m4s");
        let resolve = |nor: &str| resolve_next(ID, &from, nor);
        let next = resolve("4.m4s").unwrap();
        assert_eq!(next.key(), format!("{ID}/{DIR}/4.m4s"));
        let other = "aac-lc-64k.0123456789ab";
        let switched = resolve(&format!("../{other}/4.m4s")).unwrap();
        assert_eq!(switched.relative, format!("{other}/4.m4s"));
        assert!(resolve("./init.mp4").is_some());
        for bad in [
            "",
            "../../other/x.m4s",
            "../../../etc/passwd",
            "/media/7dea392de05ff128da4c3c57/x.m4s",
            "//evil.example/x.m4s",
            "http://evil.example/x.m4s",
            "4.m4s?x=1",
            "4.m4s#f",
            "%2e%2e/x.m4s",
            "..\\x.m4s",
            "../master.m3u8",
            "../track.json",
            "4.txt",
            "a/4.m4s",
        ] {
            assert_eq!(resolve(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sessions_are_bounded_and_expire() {
        let start = Instant::now();
        let mut sessions = Sessions::new(start);
        assert_eq!(sessions.note("a", start), 1);
        assert_eq!(sessions.note("b", start + SESSION_WINDOW / 2), 2);
        // Not full: "a" expires on its own, "b" is still recent.
        let later = start + SESSION_WINDOW + PRUNE_EVERY;
        assert_eq!(sessions.note("c", later), 2);
        let mut sessions = Sessions::new(start);
        assert_eq!(sessions.note("a", start), 1);
        assert_eq!(sessions.note("a", start), 1);
        for i in 0..MAX_SESSIONS + 10 {
            sessions.note(&i.to_string(), start);
        }
        assert_eq!(sessions.last_seen.len(), MAX_SESSIONS);
        let later = start + SESSION_WINDOW + Duration::from_secs(1);
        assert_eq!(sessions.note("new", later), 1);
    }
}
