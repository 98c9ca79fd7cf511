//! These run on the current-thread runtime: a task runs until it awaits, so once a caller has
//! counted itself in `entered` and yielded, it has joined (or started) its flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::*;

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("boom {0}")]
struct Boom(u32);

/// What the callers of one test share.
#[derive(Clone)]
struct Harness {
    flights: Arc<SingleFlight<String, Boom>>,
    /// Calls of a `load` closure.
    loads: Arc<AtomicUsize>,
    /// Callers that have entered `run`.
    entered: Arc<AtomicUsize>,
    /// Loads wait here for a permit, so the test decides when they finish.
    gate: Arc<Semaphore>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            flights: Arc::new(SingleFlight::new()),
            loads: Arc::default(),
            entered: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    /// Spawns a caller of `key` whose load, once let through the gate, gives `outcome`.
    fn call(
        &self,
        tasks: &mut JoinSet<Result<String, FlightError<Boom>>>,
        key: &'static str,
        outcome: Result<String, Boom>,
    ) -> tokio::task::AbortHandle {
        let h = self.clone();
        tasks.spawn(async move {
            h.entered.fetch_add(1, Ordering::SeqCst);
            let (loads, gate) = (h.loads.clone(), h.gate.clone());
            h.flights
                .run(key, move || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let _permit = gate.acquire_owned().await;
                        outcome
                    }
                })
                .await
        })
    }

    /// Waits (without sleeping) until `n` callers have joined their flights.
    async fn until_entered(&self, n: usize) {
        while self.entered.load(Ordering::SeqCst) < n {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn fifty_concurrent_callers_share_one_load() {
    let h = Harness::new();
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        h.call(&mut tasks, "seg", Ok("bytes".to_string()));
    }
    h.until_entered(50).await;
    assert_eq!(h.flights.in_flight(), 1);
    h.gate.add_permits(1);
    for result in tasks.join_all().await {
        assert_eq!(result.unwrap(), "bytes");
    }
    assert_eq!(h.loads.load(Ordering::SeqCst), 1);
    assert_eq!(h.flights.in_flight(), 0);
}

#[tokio::test]
async fn an_error_is_shared_then_the_next_call_loads_again() {
    let h = Harness::new();
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        h.call(&mut tasks, "seg", Err(Boom(1)));
    }
    h.until_entered(10).await;
    h.gate.add_permits(1);
    let errors: Vec<Arc<Boom>> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|result| match result {
            Err(FlightError::Load(error)) => error,
            other => panic!("expected the shared load error, got {other:?}"),
        })
        .collect();
    assert_eq!(*errors[0], Boom(1));
    assert!(errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])));
    assert_eq!(h.loads.load(Ordering::SeqCst), 1);

    // The failure was not cached.
    let mut tasks = JoinSet::new();
    h.call(&mut tasks, "seg", Ok("second".to_string()));
    h.gate.add_permits(1);
    assert_eq!(tasks.join_next().await.unwrap().unwrap().unwrap(), "second");
    assert_eq!(h.loads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn different_keys_load_independently() {
    let h = Harness::new();
    let mut tasks = JoinSet::new();
    for _ in 0..5 {
        h.call(&mut tasks, "a", Ok("A".to_string()));
        h.call(&mut tasks, "b", Err(Boom(2)));
    }
    h.until_entered(10).await;
    // Both loads are in flight at once: neither key waits for the other.
    assert_eq!(h.flights.in_flight(), 2);
    assert_eq!(h.loads.load(Ordering::SeqCst), 2);
    h.gate.add_permits(2);
    let results = tasks.join_all().await;
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok(v) if v == "A"))
        .count();
    let failed = results
        .iter()
        .filter(|r| matches!(r, Err(FlightError::Load(e)) if **e == Boom(2)))
        .count();
    assert_eq!((ok, failed), (5, 5));
}

#[tokio::test]
async fn a_dropped_leader_does_not_strand_its_followers() {
    let h = Harness::new();
    let mut leader = JoinSet::new();
    let leader_handle = h.call(&mut leader, "seg", Ok("bytes".to_string()));
    let mut followers = JoinSet::new();
    for _ in 0..3 {
        h.call(&mut followers, "seg", Ok("unused".to_string()));
    }
    h.until_entered(4).await;
    leader_handle.abort();
    assert!(
        leader
            .join_next()
            .await
            .unwrap()
            .unwrap_err()
            .is_cancelled()
    );

    h.gate.add_permits(1);
    for result in followers.join_all().await {
        assert_eq!(result.unwrap(), "bytes");
    }
    assert_eq!(h.loads.load(Ordering::SeqCst), 1);
    assert_eq!(h.flights.in_flight(), 0);
}

#[tokio::test]
async fn a_panicking_load_is_abandoned_and_the_key_freed() {
    let flights = SingleFlight::<String, Boom>::new();
    let result = flights
        .run("seg", || async {
            tokio::task::yield_now().await;
            panic!("load blew up (expected by this test)")
        })
        .await;
    assert!(matches!(result, Err(FlightError::Abandoned)));
    assert_eq!(flights.in_flight(), 0);
    let again = flights.run("seg", || async { Ok("fine".to_string()) });
    assert_eq!(again.await.unwrap(), "fine");
}
