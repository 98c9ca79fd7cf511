//! What a finished soak measured, and the verdict: the quiet points, the summary printed for
//! the record, and the list of broken rules.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use segue::server::zerocopy::MIN_ZERO_COPY_BYTES;

use super::http;
use super::process::{FdCensus, LogReport, Probe, Sample};
use super::shared::{Tally, count};
use crate::support;

/// Allowed growth of the anonymous RSS between quiet points 1 and 2, KiB. The hot-file cache is
/// bounded and already full at quiet point 1, tokio's threads are all there, so what may still
/// grow is the allocator's free lists and fragmentation and SQLite's page cache of the growing
/// catalog (2 MiB at most). Measured with glibc's malloc: 2.7 MiB over the 475 s steady state of
/// a 600 s run (31.5 to 34.2 MiB), under 7 MiB in 60 s runs, where the warm-up is shorter.
/// 16 MiB leaves room for that noise; a leak of 70 bytes per request (about 250,000 in the
/// default run) or of one 128 KiB segment per 2,000 exceeds it.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;
/// Longest wait for the descriptors to settle at a quiet point.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// A /proc sample and when it was taken.
pub type Timed = (Duration, Sample);

/// The server's figures at a quiet point.
pub struct Quiet {
    /// When, since the start.
    pub at: Duration,
    /// Memory, descriptors, threads.
    pub sample: Sample,
    /// `segue_cache_bytes`.
    pub cache_bytes: f64,
    /// `segue_cache_hits_total` and `segue_cache_misses_total` so far.
    pub cache_lookups: (f64, f64),
    /// The descriptors sorted out.
    pub fds: FdCensus,
}

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} s: RSS {:.1} MiB (anon {:.1}), fds {} + {} cached media files, {} threads, \
             cache {:.1} MiB ({:.0} hits, {:.0} misses so far)",
            self.at.as_secs(),
            mib(self.sample.rss_kib),
            mib(self.sample.anon_kib),
            self.fds.other_count(),
            self.fds.media_count(),
            self.sample.threads,
            self.cache_bytes / 1_048_576.0,
            self.cache_lookups.0,
            self.cache_lookups.1,
        )
    }
}

impl Quiet {
    /// What is wrong with the open media files. Since zero-copy sends, a cached immutable file
    /// (inside a rendition directory) of at least [`MIN_ZERO_COPY_BYTES`] keeps its descriptor
    /// while it is cached; with no response in flight each such descriptor belongs to one cache
    /// entry. So none may be open twice, none may be smaller or outside a rendition directory,
    /// and there are no more than the cache's bytes allow.
    fn media_fd_problem(&self, media: &Path) -> Option<String> {
        let unexpected: Vec<_> = self
            .fds
            .media
            .iter()
            .filter(|(file, n)| {
                let size = std::fs::metadata(media.join(file)).map_or(0, |m| m.len());
                **n > 1
                    || Path::new(file).components().count() != 3
                    || size < MIN_ZERO_COPY_BYTES as u64
            })
            .collect();
        let most = self.cache_bytes as usize / MIN_ZERO_COPY_BYTES;
        (!unexpected.is_empty() || self.fds.media_count() > most).then(|| {
            format!(
                "at {} s, {} media files are open ({most} at most for the cache's {:.0} \
                 bytes); open twice, small or not in a rendition: {unexpected:?}",
                self.at.as_secs(),
                self.fds.media_count(),
                self.cache_bytes
            )
        })
    }
}

/// With every load task out: the cache size from `/metrics`, then the descriptors once those
/// other than cached media files have come down to `baseline` (or, with none, stayed the same
/// for 2 s).
pub async fn quiet_point(
    probe: Probe,
    addr: SocketAddr,
    media: &Path,
    started: Instant,
    baseline: Option<usize>,
) -> Quiet {
    let metrics = http::get_ok(addr, "/metrics").await.unwrap().text();
    let cache_bytes = support::metric(&metrics, "segue_cache_bytes");
    let cache_lookups = (
        support::metric(&metrics, "segue_cache_hits_total"),
        support::metric(&metrics, "segue_cache_misses_total"),
    );
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut fds = probe.census(media);
    let mut steady_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = probe.census(media);
        if now.other != fds.other {
            steady_since = Instant::now();
        }
        fds = now;
        let settled = match baseline {
            Some(baseline) => fds.other_count() <= baseline,
            None => steady_since.elapsed() >= Duration::from_secs(2),
        };
        if settled || Instant::now() > deadline {
            break;
        }
    }
    Quiet {
        at: started.elapsed(),
        sample: probe.sample(),
        cache_bytes,
        cache_lookups,
        fds,
    }
}

/// KiB as MiB.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Everything a finished soak measured.
pub struct Figures<'a> {
    /// The run's length.
    pub soak: Duration,
    /// The clients' counts and failures.
    pub tally: &'a Tally,
    /// The server's log.
    pub log: LogReport,
    /// Quiet points 0 (start), 1 (after the warm-up) and 2 (end).
    pub quiet: [Quiet; 3],
    /// /proc every few seconds.
    pub samples: Vec<Timed>,
    /// How the server ended on SIGTERM.
    pub exit: Option<ExitStatus>,
}

impl Figures<'_> {
    /// Prints the summary (the figures for the record) and a series of /proc samples.
    pub fn print(&self) {
        let (tally, log, [q0, q1, q2]) = (self.tally, &self.log, &self.quiet);
        let peak = |f: fn(&Sample) -> u64| self.samples.iter().map(|(_, s)| f(s)).max();
        eprintln!(
            "soak summary: {} s; HTTP: {} requests {:?}, server access log {} lines {:?}; \
             WS: {} connections, {} messages sent, {} received ({} library, {} prefetch events, \
             {} not_active); hang-ups: {} mid-body, {} mid-head, {} before reading; ingests: {}; \
             quiet points: {q0}; {q1}; {q2}; peak RSS {:.1} MiB, peak fds {}; \
             log: {} lines, {} at WARN/ERROR",
            self.soak.as_secs(),
            count(&tally.http_requests),
            tally.statuses(),
            log.statuses.values().sum::<u64>(),
            log.statuses,
            count(&tally.ws_connections),
            count(&tally.ws_sent),
            count(&tally.ws_received),
            count(&tally.library_events),
            count(&tally.prefetch_events),
            count(&tally.not_active),
            count(&tally.mid_body_aborts),
            count(&tally.mid_head_aborts),
            count(&tally.unread_aborts),
            count(&tally.ingests),
            mib(peak(|s| s.rss_kib).unwrap_or(0)),
            peak(|s| s.fds as u64).unwrap_or(0),
            log.lines,
            log.flagged_count,
        );
        let series: Vec<String> = self
            .samples
            .iter()
            .step_by(10)
            .map(|(at, s)| {
                format!(
                    "{}s {:.0}/{:.0} MiB {} fds {} threads",
                    at.as_secs(),
                    mib(s.rss_kib),
                    mib(s.anon_kib),
                    s.fds,
                    s.threads
                )
            })
            .collect();
        eprintln!(
            "soak series (RSS/anon, fds, threads): {}",
            series.join(", ")
        );
    }

    /// Every rule the run broke, in words (`media`: the library's track directories).
    pub fn problems(&self, media: &Path) -> Vec<String> {
        let (tally, log, [_, q1, q2]) = (self.tally, &self.log, &self.quiet);
        let mut problems = Vec::new();
        let (failures, examples) = tally.failures();
        if failures > 0 {
            problems.push(format!(
                "{failures} failed checks, the first:\n  {}",
                examples.join("\n  ")
            ));
        }
        if log.server_errors() > 0 {
            problems.push(format!("the access log has 5xx: {:?}", log.statuses));
        }
        if log.flagged_count > 0 {
            problems.push(format!(
                "{} log lines at WARN/ERROR (or not from the logger), the first:\n  {}",
                log.flagged_count,
                log.flagged.join("\n  ")
            ));
        }
        if q2.fds.other_count() > q1.fds.other_count() {
            problems.push(format!(
                "open descriptors (cached media files aside): {} after the warm-up {:?}, \
                 {} at the end {:?}",
                q1.fds.other_count(),
                q1.fds.other,
                q2.fds.other_count(),
                q2.fds.other
            ));
        }
        problems.extend([q1, q2].iter().filter_map(|q| q.media_fd_problem(media)));
        let growth = q2.sample.anon_kib.saturating_sub(q1.sample.anon_kib);
        if growth > RSS_GROWTH_LIMIT_KIB {
            problems.push(format!(
                "anonymous RSS grew {:.1} MiB in the steady state (limit {:.0} MiB)",
                mib(growth),
                mib(RSS_GROWTH_LIMIT_KIB)
            ));
        }
        if !self.exit.is_some_and(|s| s.success()) {
            problems.push(format!("SIGTERM: the server exited with {:?}", self.exit));
        }
        let activity = [
            ("HTTP requests", count(&tally.http_requests)),
            ("access-log lines", log.statuses.values().sum()),
            ("mid-body hang-ups", count(&tally.mid_body_aborts)),
            ("mid-head hang-ups", count(&tally.mid_head_aborts)),
            ("WebSocket messages", count(&tally.ws_received)),
            ("prefetch events", count(&tally.prefetch_events)),
            ("ingests", count(&tally.ingests)),
            ("library events", count(&tally.library_events)),
        ];
        for (what, n) in activity {
            if n == 0 {
                problems.push(format!("no {what} at all: the soak did not run as meant"));
            }
        }
        problems
    }
}
