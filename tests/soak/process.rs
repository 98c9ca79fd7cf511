//! The `segue serve` process under soak (started by `common::ServeCommand` with its stdout and
//! stderr in a log file): measured through /proc (resident memory, open descriptors, threads),
//! and its log read back line by line.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Reads a process's figures from /proc.
#[derive(Debug, Clone, Copy)]
pub struct Probe(pub u32);

impl Probe {
    /// The process's resident memory, open descriptors and threads, now.
    pub fn sample(self) -> Sample {
        let pid = self.0;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        Sample {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            fds,
            threads: field("Threads:") as usize,
        }
    }
}

impl Probe {
    /// The open descriptors: those of files under `media` (the library's track directories)
    /// by path, the others by kind: a path, `pipe`, `anon_inode:…`, or `socket STATE` for a TCP socket
    /// (its state from /proc/PID/net/tcp), so a leak says what leaks.
    pub fn census(self, media: &Path) -> FdCensus {
        let pid = self.0;
        let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
        // Columns: sl local rem st queues tr retrnsmt uid timeout inode …
        let states: BTreeMap<&str, &str> = tcp
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                Some((*cols.get(9)?, tcp_state(cols.get(3)?)))
            })
            .collect();
        let mut census = FdCensus::default();
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
        {
            let Ok(target) = entry.and_then(|e| std::fs::read_link(e.path())) else {
                continue; // closed in between
            };
            let (map, kind) = match target.strip_prefix(media) {
                Ok(file) => (&mut census.media, file.display().to_string()),
                Err(_) => {
                    let target = target.display().to_string();
                    let kind = match target.strip_prefix("socket:[") {
                        Some(inode) => format!(
                            "socket {}",
                            states
                                .get(inode.trim_end_matches(']'))
                                .unwrap_or(&"(not TCP over IPv4)")
                        ),
                        None if target.starts_with("pipe:") => "pipe".into(),
                        None => target,
                    };
                    (&mut census.other, kind)
                }
            };
            *map.entry(kind).or_default() += 1;
        }
        census
    }
}

/// A process's open descriptors, sorted out.
#[derive(Debug, Default)]
pub struct FdCensus {
    /// Media files (relative to the track directories) and how often each is open.
    pub media: BTreeMap<String, usize>,
    /// Everything else by kind.
    pub other: BTreeMap<String, usize>,
}

impl FdCensus {
    /// Descriptors of media files.
    pub fn media_count(&self) -> usize {
        self.media.values().sum()
    }

    /// Descriptors of anything else.
    pub fn other_count(&self) -> usize {
        self.other.values().sum()
    }
}

/// The name of a TCP state as /proc/net/tcp numbers it (include/net/tcp_states.h).
fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "?",
    }
}

/// One reading of /proc/PID.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// RssAnon, KiB: VmRSS less the pages of mapped files (the binary's code among them, which
    /// pages in as code paths run for the first time) and shared memory.
    pub anon_kib: u64,
    /// Entries of /proc/PID/fd.
    pub fds: usize,
    /// Threads.
    pub threads: usize,
}

/// What the server's log says.
#[derive(Debug, Default)]
pub struct LogReport {
    /// Lines read.
    pub lines: u64,
    /// Access-log lines (`finished processing request … status=N`) by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Lines at WARN or ERROR, or not from the logger at all (first few).
    pub flagged: Vec<String>,
    /// How many lines were flagged.
    pub flagged_count: u64,
}

impl LogReport {
    /// Access-log lines with a 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.statuses.range(500..600).map(|(_, n)| n).sum()
    }
}

/// Reads the server log at `path`. A tracing line is `TIMESTAMP  LEVEL target: message`; every
/// line other than those at TRACE, DEBUG or INFO and the `listening on` announcement is flagged.
pub fn scan_log(path: &Path) -> LogReport {
    let mut report = LogReport::default();
    let file = File::open(path).expect("open the server log");
    for line in BufReader::new(file).split(b'\n') {
        let line = String::from_utf8_lossy(&line.expect("read the server log")).into_owned();
        report.lines += 1;
        if line.starts_with("listening on http://") {
            continue;
        }
        if !matches!(
            line.split_whitespace().nth(1),
            Some("TRACE" | "DEBUG" | "INFO")
        ) {
            report.flagged_count += 1;
            if report.flagged.len() < 20 {
                report.flagged.push(line);
            }
            continue;
        }
        if let Some(status) = line
            .split_once("finished processing request")
            .and_then(|(_, rest)| rest.split_once("status="))
            .and_then(|(_, status)| status.get(..3)?.parse().ok())
        {
            *report.statuses.entry(status).or_default() += 1;
        }
    }
    report
}
