//! Redis outages under a fleet: stopped, restarted empty, flushed between two beats, hung, or
//! not there when an origin starts. Media and sessions go on locally, and the sessions are
//! shared again, with no change lost and no live origin taken for dead.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_sessions_go_on_locally_and_are_shared_again_when_it_returns() {
    let library = Library::new();
    let mut redis = RedisServer::start();
    let [one, two] = fleet(&library, &redis).await;
    let mut a = Pumped::new(device(&one, "garage", "A").await.0);
    let mut a2 = Pumped::new(device(&one, "garage", "A2").await.0);
    let mut b = Pumped::new(device(&two, "garage", "B").await.0);
    let logs = || {
        format!(
            "origin one:\n{}\norigin two:\n{}",
            one.log_tail(30),
            two.log_tail(30)
        )
    };
    b.state_where(|s| devices(s).len() == 3)
        .await
        .unwrap_or_else(|| panic!("B never saw three devices\n{}", logs()));

    redis.stop();
    poll_until(&one.url("/healthz"), "degraded", |b| {
        b.contains("bus: local (redis unreachable")
    })
    .await;
    // Media is still served, and a command on origin one reaches its other local device.
    let master = get(one.url(&format!("/media/{}/master.m3u8", library.tracks[0]))).await;
    assert!(master.starts_with("#EXTM3U"), "{master}");
    a.send(json!({"type":"load","tracks":[library.tracks[1]],"play":false}))
        .await;
    a2.state_where(|s| s["track"] == library.tracks[1].as_str())
        .await
        .unwrap_or_else(|| panic!("no local state during the outage\n{}", logs()));

    // Redis comes back empty: origin one writes its session back, and B on origin two sees
    // the change made during the outage. Every device stays in the session: no live origin
    // is taken for dead while Redis relearns who is alive.
    redis.restart();
    poll_until(&one.url("/healthz"), "recovered", |b| {
        b.contains("bus: redis ok")
    })
    .await;
    let state = b
        .state_where(|s| s["track"] == library.tracks[1].as_str())
        .await
        .unwrap_or_else(|| panic!("B never saw the change made in the outage\n{}", logs()));
    assert_eq!(devices(&state).len(), 3, "{state}");
    let log = one.log().join("\n");
    let warnings = log.matches("Redis does not answer").count();
    assert_eq!(warnings, 1, "one warning per outage:\n{log}");
    for (server, name) in [(&one, "origin one"), (&two, "origin two")] {
        fixture::assert_no_panic(server, name);
    }
}

/// The revisions of `states` move forward (the protocol's promise to each device).
fn assert_revisions_increase(states: &[serde_json::Value], who: &str) {
    let revisions: Vec<u64> = states
        .iter()
        .map(|s| s["revision"].as_u64().unwrap())
        .collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "{who} saw revisions {revisions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_keys_between_two_beats_takes_no_live_origin_for_dead() {
    // A Redis that restarts (or is flushed) faster than any command fails: no origin sees an
    // error, every liveness key is gone at once, and the first origin to sweep must not
    // take the other for dead before it has said it is alive again.
    let library = Library::new();
    let redis = RedisServer::start();
    // Origins started half a sweep apart, so that after the flush one of them sweeps while
    // the other's liveness key is still missing.
    let one = origin(&library.lib.library(), &redis);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let two = origin(&library.lib.library(), &redis);
    // Past the first three heartbeats, in which an origin judges no other dead.
    let judging = tokio::time::Instant::now() + std::time::Duration::from_millis(3500);
    for server in [&one, &two] {
        bus_up(server).await;
    }
    let mut a = Pumped::new(device(&one, "attic", "A").await.0);
    let mut b = Pumped::new(device(&two, "attic", "B").await.0);
    assert!(b.state_where(|s| devices(s).len() == 2).await.is_some());
    a.send(json!({"type":"load","tracks":[library.tracks[0]],"play":false}))
        .await;
    assert!(
        b.state_where(|s| s["track"] == library.tracks[0].as_str())
            .await
            .is_some()
    );

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    tokio::time::sleep_until(judging).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // Four sweeps of each origin.
    let seen_by_b = b.states_within(std::time::Duration::from_secs(2)).await;
    assert_revisions_increase(&seen_by_b, "B");
    for state in &seen_by_b {
        assert_eq!(devices(state).len(), 2, "B saw a device leave: {state}");
        assert_eq!(state["track"], library.tracks[0].as_str(), "{state}");
    }
    for server in [&one, &two] {
        let metrics = get(server.url("/metrics")).await;
        assert_eq!(
            bus_events(&metrics, "reset"),
            1,
            "the lost keys noticed once: {metrics}"
        );
    }

    // The session is stored again: a command on origin two reaches origin one.
    b.send(json!({"type":"load","tracks":[library.tracks[1]],"play":false}))
        .await;
    let state = a
        .state_where(|s| s["track"] == library.tracks[1].as_str())
        .await
        .unwrap_or_else(|| panic!("A never saw B's command\n{}", two.log_tail(20)));
    assert_eq!(devices(&state).len(), 2, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_both_sides_of_an_outage_end_in_the_later_one_on_every_device() {
    let library = Library::new();
    let mut redis = RedisServer::start();
    let [one, two] = fleet(&library, &redis).await;
    let mut a = Pumped::new(device(&one, "porch", "A").await.0);
    let mut b = Pumped::new(device(&two, "porch", "B").await.0);
    assert!(b.state_where(|s| devices(s).len() == 2).await.is_some());

    redis.stop();
    for server in [&one, &two] {
        poll_until(&server.url("/healthz"), "degraded", |b| {
            b.contains("bus: local (redis unreachable")
        })
        .await;
    }
    // Each origin applies its own device's command alone; origin two's comes later.
    let earlier = json!([library.tracks[1]]);
    let later = json!([library.tracks[0], library.tracks[1]]);
    a.send(json!({"type":"load","tracks":earlier,"play":false}))
        .await;
    assert!(a.state_where(|s| s["queue"] == earlier).await.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    b.send(json!({"type":"load","tracks":later,"play":false}))
        .await;
    assert!(b.state_where(|s| s["queue"] == later).await.is_some());

    redis.restart();
    let seen_by_a = a.states_within(std::time::Duration::from_secs(3)).await;
    let seen_by_b = b.states_within(std::time::Duration::from_millis(100)).await;
    let last = seen_by_a
        .last()
        .unwrap_or_else(|| panic!("A saw nothing after Redis came back"));
    assert_eq!(last["queue"], later, "the later change wins: {last}");
    assert_eq!(devices(last).len(), 2, "{last}");
    assert_revisions_increase(&seen_by_a, "A");
    assert_revisions_increase(&seen_by_b, "B");
    if let Some(b_last) = seen_by_b.last() {
        assert_eq!(b_last["queue"], later, "{b_last}");
    }
    // Shared again: a command on origin one reaches origin two.
    a.send(json!({"type":"volume","level":0.25})).await;
    let state = b
        .state_where(|s| s["volume"] == 0.25)
        .await
        .unwrap_or_else(|| panic!("B never saw A's command\n{}", one.log_tail(20)));
    assert_eq!(state["queue"], later, "{state}");
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_started_without_redis_serves_and_shares_its_sessions_once_redis_is_up() {
    let library = Library::new();
    let mut redis = RedisServer::start();
    redis.stop();
    let one = origin(&library.lib.library(), &redis);
    poll_until(&one.url("/healthz"), "local at start", |b| {
        b.contains("bus: local (redis unreachable")
    })
    .await;
    let mut a = Pumped::new(device(&one, "attic", "A").await.0);
    a.send(json!({"type":"load","tracks":[library.tracks[0]],"play":false}))
        .await;
    let local = a
        .state_where(|s| s["track"] == library.tracks[0].as_str())
        .await;
    assert!(
        local.is_some(),
        "a local session works:\n{}",
        one.log_tail(20)
    );

    redis.restart();
    bus_up(&one).await;
    let two = origin(&library.lib.library(), &redis);
    bus_up(&two).await;
    // The session made before Redis was up is shared now: a device on origin two finds it.
    let (mut b, _) = device(&two, "attic", "B").await;
    let state = next_of(&mut b, "state").await;
    assert_eq!(state["queue"], json!([library.tracks[0]]), "{state}");
    fixture::assert_no_panic(&one, "origin one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_delays_a_command_by_its_timeout_not_forever() {
    let library = Library::new();
    let redis = RedisServer::start();
    let [one, two] = fleet(&library, &redis).await;
    let mut a = Pumped::new(device(&one, "porch", "A").await.0);
    let mut b = Pumped::new(device(&two, "porch", "B").await.0);
    assert!(b.state_where(|s| devices(s).len() == 2).await.is_some());

    // SIGSTOP: connections stay open and nothing answers. A command on origin one is applied
    // locally once Redis's response timeout has passed, and the origin says it is degraded.
    redis.pause();
    let sent = Instant::now();
    a.send(json!({"type":"load","tracks":[library.tracks[0]],"play":false}))
        .await;
    let applied = a
        .state_where(|s| s["track"] == library.tracks[0].as_str())
        .await;
    eprintln!("applied locally {:?} after the send", sent.elapsed());
    assert!(
        applied.is_some(),
        "no state while Redis hangs:\n{}",
        one.log_tail(20)
    );
    poll_until(&one.url("/healthz"), "degraded", |b| {
        b.contains("bus: local (redis unreachable")
    })
    .await;

    // Redis answers again, with its keys: the change reaches origin two.
    redis.resume();
    bus_up(&one).await;
    let seen = b
        .state_where(|s| s["track"] == library.tracks[0].as_str())
        .await;
    assert!(
        seen.is_some(),
        "origin two never saw it:\n{}",
        two.log_tail(20)
    );
    fixture::assert_no_panic(&one, "origin one");
}
