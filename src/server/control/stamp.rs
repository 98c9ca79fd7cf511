//! Wall-clock time for shared sessions: an `Instant` means nothing to another process, and a
//! session stored in Redis is read by every origin of the fleet.

use std::ops::Add;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A wall-clock instant: milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp(pub u64);

impl Stamp {
    /// Now, by the system clock (0 before 1970: never in practice).
    pub fn now() -> Stamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Stamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// Seconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn seconds_since(self, earlier: Stamp) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 / 1000.0
    }
}

impl Add<Duration> for Stamp {
    type Output = Stamp;
    fn add(self, d: Duration) -> Stamp {
        Stamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}
