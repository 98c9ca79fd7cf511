//! Request coalescing: concurrent loads of one key make one load, and all callers share its result.
//!
//! The first caller for a key (the leader) starts the load as its own tokio task; every caller,
//! the leader included, then waits on a `watch` channel for the outcome. Because the load does not
//! live in the leader's future, a leader whose client went away (its future dropped) does not
//! cancel the load that its followers wait on. The task removes the key before it publishes the
//! outcome, so a caller that arrives after the result starts a fresh load: nothing is cached here,
//! failures included (caching belongs to the memory and disk caches around this).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// How a coalesced load failed, as seen by every caller that waited on it.
#[derive(Debug, thiserror::Error)]
pub enum FlightError<E> {
    /// The load returned this error (one value, shared by all its callers).
    #[error(transparent)]
    Load(Arc<E>),
    /// The load ended without a result: it panicked, or the runtime shut down under it.
    /// Retrying may succeed.
    #[error("the load was abandoned before it finished")]
    Abandoned,
}

// Derived Clone would require E: Clone; the Arc makes it unnecessary.
impl<E> Clone for FlightError<E> {
    fn clone(&self) -> Self {
        match self {
            FlightError::Load(error) => FlightError::Load(Arc::clone(error)),
            FlightError::Abandoned => FlightError::Abandoned,
        }
    }
}

/// The published outcome of one load; `None` until it finishes.
type Outcome<V, E> = Option<Result<V, Arc<E>>>;

/// One load in flight.
struct Flight<V, E> {
    /// Tells this flight from a later one for the same key.
    id: u64,
    outcome: watch::Receiver<Outcome<V, E>>,
}

type Flights<V, E> = Mutex<HashMap<String, Flight<V, E>>>;

/// Coalesces concurrent async loads of values `V` (failing with `E`) by string key.
pub struct SingleFlight<V, E> {
    flights: Arc<Flights<V, E>>,
    next_id: AtomicU64,
}

impl<V, E> Default for SingleFlight<V, E> {
    fn default() -> Self {
        SingleFlight {
            flights: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<V, E> SingleFlight<V, E>
where
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// An empty set of flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value for `key`: joins the load in flight for it, or starts `load` (in a spawned
    /// task) if there is none. `load` is called only by the caller that starts a flight.
    ///
    /// Must be called within a tokio runtime.
    pub async fn run<F, Fut>(&self, key: &str, load: F) -> Result<V, FlightError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let mut outcome = {
            let mut flights = lock(&self.flights);
            if let Some(flight) = flights.get(key) {
                flight.outcome.clone()
            } else {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (sender, outcome) = watch::channel(None);
                flights.insert(
                    key.to_owned(),
                    Flight {
                        id,
                        outcome: outcome.clone(),
                    },
                );
                drop(flights);
                // Armed before `load` runs, so even a panic in `load` itself unregisters.
                let landing = Landing {
                    flights: Arc::clone(&self.flights),
                    key: key.to_owned(),
                    id,
                };
                let pending = load();
                tokio::spawn(async move {
                    let result = pending.await.map_err(Arc::new);
                    // Unregister first, so no new caller joins a finished flight.
                    drop(landing);
                    sender.send_replace(Some(result));
                });
                outcome
            }
        };
        // Only fails when the sender is gone without a result: the task panicked or was dropped.
        let Ok(done) = outcome.wait_for(Option::is_some).await else {
            return Err(FlightError::Abandoned);
        };
        match &*done {
            Some(Ok(value)) => Ok(value.clone()),
            Some(Err(error)) => Err(FlightError::Load(Arc::clone(error))),
            None => Err(FlightError::Abandoned),
        }
    }

    /// How many keys are loading now (for metrics and tests).
    pub fn in_flight(&self) -> usize {
        lock(&self.flights).len()
    }
}

/// Removes a flight from the map when dropped: when its load finishes, panics, or is dropped.
struct Landing<V, E> {
    flights: Arc<Flights<V, E>>,
    key: String,
    id: u64,
}

impl<V, E> Drop for Landing<V, E> {
    fn drop(&mut self) {
        let mut flights = lock(&self.flights);
        // A later flight for the same key is not ours to remove.
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
    }
}

/// The map, even after a panic elsewhere: no code panics while holding it mid-update.
fn lock<V, E>(flights: &Flights<V, E>) -> MutexGuard<'_, HashMap<String, Flight<V, E>>> {
    flights.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[path = "single_flight_tests.rs"]
mod tests;
