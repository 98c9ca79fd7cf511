//! The metrics of the CMCD players send (CTA-5004), registered with the server's others
//! ([`crate::server::metrics::Metrics`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of CMCD requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `query` or `headers`.
    transmission: &'static str,
    /// `valid` or `invalid` (ignored).
    outcome: &'static str,
}

/// Labels of `nor` warm-ups.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WarmLabels {
    outcome: &'static str,
}

/// Requests carrying CMCD, sessions, buffer lengths, throughputs and warm-ups.
#[derive(Debug)]
pub struct CmcdMetrics {
    requests: Family<RequestLabels, Counter>,
    sessions: Gauge,
    buffer_length: Histogram,
    throughput: Histogram,
    warms: Family<WarmLabels, Counter>,
}

impl CmcdMetrics {
    /// Registers the CMCD metrics in `r`, all at zero.
    pub fn register(r: &mut Registry) -> Self {
        let m = CmcdMetrics {
            requests: Family::default(),
            sessions: Gauge::default(),
            // 100 ms to about 7 minutes of buffer; 16 kbit/s to about 134 Mbit/s.
            buffer_length: Histogram::new(exponential_buckets(100.0, 2.0, 13)),
            throughput: Histogram::new(exponential_buckets(16.0, 2.0, 14)),
            warms: Family::default(),
        };
        let help = "Media requests carrying CMCD (CTA-5004), by transmission and outcome";
        r.register("segue_cmcd_requests", help, m.requests.clone());
        let help = "Distinct CMCD session ids (sid) seen in the last 5 minutes (at most 10000)";
        r.register("segue_cmcd_sessions", help, m.sessions.clone());
        let help = "CMCD buffer length (bl) players reported, in milliseconds";
        r.register("segue_cmcd_buffer_length_ms", help, m.buffer_length.clone());
        let help = "CMCD measured throughput (mtp) players reported, in kilobits per second";
        r.register("segue_cmcd_throughput_kbps", help, m.throughput.clone());
        let help = "CMCD next-object (nor) warm-ups, by outcome (warmed, failed, busy, refused)";
        r.register("segue_cmcd_warms", help, m.warms.clone());
        m
    }

    /// Counts one media request carrying CMCD (`transmission`: `query`, `headers`; `outcome`:
    /// `valid`, `invalid`).
    pub fn request(&self, transmission: &'static str, outcome: &'static str) {
        let labels = RequestLabels {
            transmission,
            outcome,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Observes a buffer length, in milliseconds.
    pub fn buffer_length(&self, ms: u64) {
        // Exact for any value a player sends (CMCD integers have at most 15 digits).
        self.buffer_length.observe(ms as f64);
    }

    /// Observes a measured throughput, in kilobits per second.
    pub fn throughput(&self, kbps: u64) {
        self.throughput.observe(kbps as f64);
    }

    /// Sets the number of sessions seen recently.
    pub fn set_sessions(&self, sessions: usize) {
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
    }

    /// Counts one `nor` warm-up by outcome (`warmed`, `failed`, `busy`, `refused`).
    pub fn warm(&self, outcome: &'static str) {
        self.warms.get_or_create(&WarmLabels { outcome }).inc();
    }
}
