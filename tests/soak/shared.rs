//! What the soak's tasks share: the gate that empties the server for a quiet point, the tally of
//! what happened, the current track list, and a small seeded random source.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{RwLock as AsyncRwLock, RwLockReadGuard, RwLockWriteGuard};

/// Everything the load tasks share.
pub struct Shared {
    /// Lets the coordinator empty the server.
    pub gate: Gate,
    /// What happened.
    pub tally: Tally,
    /// The library as `/api/tracks` last listed it.
    pub tracks: TrackSet,
    /// Ids of the tracks announced by `library` events to the watcher.
    pub announced: Mutex<HashSet<String>>,
}

impl Shared {
    /// Shares `tracks` (the initial library).
    pub fn new(tracks: Vec<Track>) -> Arc<Shared> {
        Arc::new(Shared {
            gate: Gate::default(),
            tally: Tally::default(),
            tracks: TrackSet(RwLock::new(Arc::new(tracks))),
            announced: Mutex::new(HashSet::new()),
        })
    }
}

/// Every load task holds a turn (a read guard) while it has a connection open or an ingest
/// running, and gives it back when asked to yield. The coordinator's `pause` takes the write
/// side, so when it returns no client of the server is left: a quiet point. tokio's RwLock is
/// fair, so a pending pause holds back new turns instead of waiting behind them.
#[derive(Default)]
pub struct Gate {
    lock: AsyncRwLock<()>,
    paused: AtomicBool,
    stopping: AtomicBool,
}

impl Gate {
    /// Waits for a turn; `None` once the soak is over.
    pub async fn enter(&self) -> Option<RwLockReadGuard<'_, ()>> {
        if self.stopped() {
            return None;
        }
        let turn = self.lock.read().await;
        (!self.stopped()).then_some(turn)
    }

    /// Whether a task holding a turn should close its connections and give the turn back.
    pub fn must_yield(&self) -> bool {
        self.paused.load(Ordering::SeqCst) || self.stopped()
    }

    /// Whether the soak is over.
    pub fn stopped(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Asks every task to yield and waits until all have: no turn is held while the guard lives.
    pub async fn pause(&self) -> RwLockWriteGuard<'_, ()> {
        self.paused.store(true, Ordering::SeqCst);
        let all_out = self.lock.write().await;
        // Cleared before the guard is dropped, so the tasks let in next see no pause.
        self.paused.store(false, Ordering::SeqCst);
        all_out
    }

    /// Ends the soak: every task returns after its current step.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Sleeps `duration`, cut short when the task must yield.
    pub async fn idle(&self, duration: Duration) {
        let end = Instant::now() + duration;
        while !self.must_yield() && Instant::now() < end {
            let step = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(step.min(Duration::from_millis(100))).await;
        }
    }
}

/// Counters of the soak, and the first few failures in words.
#[derive(Default)]
pub struct Tally {
    /// HTTP responses read in full by the load clients.
    pub http_requests: AtomicU64,
    /// Their statuses.
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// WebSocket text messages sent by clients.
    pub ws_sent: AtomicU64,
    /// WebSocket text messages received by clients (the watcher included).
    pub ws_received: AtomicU64,
    /// WebSocket connections opened.
    pub ws_connections: AtomicU64,
    /// `library` events received by the watcher.
    pub library_events: AtomicU64,
    /// `prefetch` events received by the session clients.
    pub prefetch_events: AtomicU64,
    /// `not_active` errors: a report raced with another device's transfer (expected).
    pub not_active: AtomicU64,
    /// Responses dropped after a few KB of body.
    pub mid_body_aborts: AtomicU64,
    /// Request heads cut off before their end.
    pub mid_head_aborts: AtomicU64,
    /// Requests sent by clients that hang up without reading anything.
    pub unread_aborts: AtomicU64,
    /// `segue ingest` runs that added a track.
    pub ingests: AtomicU64,
    failures: Mutex<Vec<String>>,
    failure_count: AtomicU64,
}

/// How many failures are kept in words for the report.
const FAILURES_KEPT: usize = 30;

impl Tally {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response with `status`.
    pub fn response(&self, status: u16) {
        Tally::bump(&self.http_requests);
        *lock(&self.statuses).entry(status).or_default() += 1;
    }

    /// Responses by status.
    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        lock(&self.statuses).clone()
    }

    /// Records a broken rule.
    pub fn fail(&self, what: impl Into<String>) {
        Tally::bump(&self.failure_count);
        let mut failures = lock(&self.failures);
        if failures.len() < FAILURES_KEPT {
            failures.push(what.into());
        }
    }

    /// How many rules were broken, and the first few in words.
    pub fn failures(&self) -> (u64, Vec<String>) {
        (
            self.failure_count.load(Ordering::Relaxed),
            lock(&self.failures).clone(),
        )
    }
}

/// The value of a counter.
pub fn count(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Locks `mutex`, ignoring poisoning (a panicking task is reported through its join handle).
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One rendition of a track, as the catalog API gives it.
#[derive(Debug, Clone)]
pub struct Rendition {
    /// Init segment URL path.
    pub init: String,
    /// Media playlist URL path.
    pub playlist: String,
    /// Media segment URL paths, in order.
    pub segments: Vec<String>,
    /// Their sizes in bytes.
    pub sizes: Vec<usize>,
}

/// One track, as the catalog API gives it.
#[derive(Debug, Clone)]
pub struct Track {
    /// Track id.
    pub id: String,
    /// HLS master playlist URL path.
    pub hls: String,
    /// DASH MPD URL path.
    pub dash: String,
    /// Waveform URL path.
    pub waveform: String,
    /// Renditions, lowest bitrate first.
    pub renditions: Vec<Rendition>,
}

impl Track {
    /// Reads one entry of `GET /api/tracks`.
    pub fn from_api(json: &serde_json::Value) -> Result<Track, String> {
        let text = |v: &serde_json::Value| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("missing field in {json}"))
        };
        let mut renditions = Vec::new();
        for r in json["renditions"].as_array().into_iter().flatten() {
            let template = text(&r["segment_template"])?;
            let sizes: Vec<usize> = r["segment_sizes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_u64().map(|s| s as usize))
                .collect();
            let segments = (1..=sizes.len())
                .map(|n| template.replace("$Number$", &n.to_string()))
                .collect();
            renditions.push(Rendition {
                init: text(&r["init"])?,
                playlist: text(&r["playlist"])?,
                segments,
                sizes,
            });
        }
        if renditions.is_empty() || renditions[0].sizes.is_empty() {
            return Err(format!("a track without segments: {json}"));
        }
        Ok(Track {
            id: text(&json["id"])?,
            hls: text(&json["hls"])?,
            dash: text(&json["dash"])?,
            waveform: text(&json["waveform"])?,
            renditions,
        })
    }
}

/// The current track list, replaced as ingests add tracks.
pub struct TrackSet(RwLock<Arc<Vec<Track>>>);

impl TrackSet {
    /// The list as of now.
    pub fn snapshot(&self) -> Arc<Vec<Track>> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the list.
    pub fn replace(&self, tracks: Vec<Track>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tracks);
    }
}

/// A small seeded random source (xorshift64*): each task gets its own, so a run's request mix
/// depends only on its seeds and timing.
pub struct Dice(u64);

impl Dice {
    /// A source for task number `seed`.
    pub fn new(seed: u64) -> Dice {
        Dice(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..hi`.
    pub fn within(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo)
    }

    /// True once in `n` times.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// An item of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.within(lo as usize, hi as usize) as u64)
    }
}
