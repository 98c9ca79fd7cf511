//! The health of a bucket library's storage, as the server sees it: every bucket request
//! updates it (and the bucket metrics), and `/readyz` answers from it.
//!
//! Reachability is the outcome of the last request: any answer (an object, a 404, a
//! create-only conflict) means the bucket works; a failure (refused, timed out, an error
//! status) means it does not until a later request is answered. The rescan loop lists the
//! bucket every `--rescan-secs`, so an idle origin still notices the bucket come and go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::bucket::{BucketObserver, Outcome};

use super::metrics::Metrics;

/// Whether the library's storage answers, fed by every bucket request.
#[derive(Debug)]
pub struct StorageHealth {
    up: AtomicBool,
    last_failure: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl StorageHealth {
    /// Up until a request fails.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        metrics.set_bucket_up(true);
        StorageHealth {
            up: AtomicBool::new(true),
            last_failure: Mutex::new(None),
            metrics,
        }
    }

    /// Whether the last bucket request was answered.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Notes a failure with its reason (shown by `/readyz`, never secrets: the bucket's own
    /// error text).
    pub fn failed(&self, reason: &str) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }

    /// The reason of the last failure, if the storage is down.
    pub fn failure(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        let reason = self.last_failure.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            reason
                .clone()
                .unwrap_or_else(|| "a bucket request failed".into()),
        )
    }
}

impl BucketObserver for StorageHealth {
    fn request(&self, op: &'static str, outcome: Outcome, bytes: u64, elapsed: Duration) {
        self.metrics
            .bucket_request(op, outcome.label(), bytes, elapsed.as_secs_f64());
        let up = outcome != Outcome::Error;
        if !up {
            self.failed(&format!("a bucket {op} request failed"));
        }
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.metrics.set_bucket_up(up);
            if up {
                tracing::info!("the library's bucket answers again");
            } else {
                tracing::warn!(op, "the library's bucket stopped answering");
            }
        }
    }
}
