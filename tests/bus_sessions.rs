//! Control sessions shared by a fleet (`segue serve --bus redis://…`): two real `segue serve`
//! processes on one library and one real `redis-server` (tests/common/redis.rs), devices on
//! each speaking segue.control.v1 over real WebSockets (tokio-tungstenite).
//!
//! What the tests prove, each against the running processes:
//! - devices of one session on two origins see one state; a command on either is applied once
//!   and every device sees it, prefetch hints reach the active device on the other origin;
//! - concurrent commands on two origins lose no update (the compare-and-set of
//!   src/server/control/bus.rs): every command makes exactly one revision;
//! - an origin killed with SIGKILL: its devices leave the session on the other origin within
//!   the heartbeat window, and a device that reconnects finds its session as it was;
//! - Redis stopped: media and sessions go on locally, `/healthz` says so, one warning; Redis
//!   back (its state lost): the sessions are written back and shared again; the same for an
//!   origin started while Redis is down; a hung Redis (SIGSTOP) holds a command up by its
//!   response timeout (500 ms), not forever; commands on both origins during an outage end in
//!   the later one on every device, with revisions that only go forward; a Redis that loses its
//!   keys between two beats (FLUSHALL: no command fails) takes no live origin for dead;
//! - a forged notice or stored value on the bus is refused and counted, never applied;
//! - over a bucket library, a track that one origin finds is announced on the other at once,
//!   though that one would not list the bucket again for an hour.

#[path = "control_ws/client.rs"]
#[allow(dead_code)] // shared with tests/control_ws.rs, which uses the rest
mod client;
mod common;
#[path = "bucket_serve/fixture.rs"]
#[allow(dead_code)] // shared with tests/bucket_serve.rs, which uses the rest
mod fixture;

#[path = "bus_sessions/outages.rs"]
mod outages;
#[path = "bus_sessions/support.rs"]
mod support;

use std::time::Instant;

use client::{next_of, send, state_where};
use common::redis::RedisServer;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_two_origins_share_one_session() {
    let library = Library::new();
    let redis = RedisServer::start();
    let [one, two] = fleet(&library, &redis).await;

    let (mut a, dev_a) = device(&one, "living-room", "Speaker").await;
    let (mut b, dev_b) = device(&two, "living-room", "Phone").await;
    // The device on origin one sees the one on origin two join.
    let state = state_where(&mut a, |s| devices(s).len() == 2).await;
    assert!(devices(&state).contains(&dev_b), "{state}");

    // A loads (without playing: it becomes the active device), B presses play on origin two:
    // both see the same state, and the prefetch hint of the next track reaches A on origin one.
    let [first, second] = library.tracks.clone();
    send(
        &mut a,
        json!({"type":"load","tracks":[first, second],"play":false}),
    )
    .await;
    let loaded = state_where(&mut b, |s| s["track"] == first.as_str()).await;
    assert_eq!(loaded["active_device"], dev_a.as_str());
    send(&mut b, json!({"type":"play"})).await;
    for socket in [&mut a, &mut b] {
        let state = state_where(socket, |s| s["playing"] == true).await;
        assert_eq!(state["active_device"], dev_a.as_str());
        assert_eq!(state["queue"], json!([first, second]));
    }
    let hint = next_of(&mut a, "prefetch").await;
    assert_eq!(hint["track"], second.as_str(), "{hint}");
    assert_eq!(hint["index"], 1);

    // A command on origin one, seen on origin two; one revision per command.
    send(&mut a, json!({"type":"volume","level":0.25})).await;
    let after = state_where(&mut b, |s| s["volume"] == 0.25).await;
    let seen_on_a = state_where(&mut a, |s| s["volume"] == 0.25).await;
    assert_eq!(seen_on_a["revision"], after["revision"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_two_origins_lose_no_update() {
    let library = Library::new();
    let redis = RedisServer::start();
    let [one, two] = fleet(&library, &redis).await;
    let (mut a, _) = device(&one, "race", "A").await;
    let (mut b, _) = device(&two, "race", "B").await;
    send(
        &mut a,
        json!({"type":"load","tracks":[library.tracks[0]],"play":false}),
    )
    .await;
    let start = state_where(&mut b, |s| s["track"].is_string()).await;
    let start_revision = start["revision"].as_u64().unwrap();

    // Each sends 30 seeks (every one a visible change: one revision each) at the same time,
    // within the default rate limit's burst.
    const EACH: u64 = 30;
    let (a_done, b_done) = tokio::join!(
        async {
            for i in 0..EACH {
                send(&mut a, json!({"type":"seek","position": 0.01 * i as f64})).await;
            }
            a
        },
        async {
            for i in 0..EACH {
                send(
                    &mut b,
                    json!({"type":"seek","position": 1.0 + 0.01 * i as f64}),
                )
                .await;
            }
            b
        }
    );
    let (mut a, mut b) = (a_done, b_done);
    let target = start_revision + 2 * EACH;
    let final_a = state_where(&mut a, |s| s["revision"].as_u64() >= Some(target)).await;
    let final_b = state_where(&mut b, |s| s["revision"].as_u64() >= Some(target)).await;
    assert_eq!(final_a["revision"].as_u64(), Some(target), "{final_a}");
    assert_eq!(final_b["revision"].as_u64(), Some(target), "{final_b}");
    assert_eq!(
        final_a["position"].as_f64().map(|p| (p * 100.0).round()),
        final_b["position"].as_f64().map(|p| (p * 100.0).round())
    );
    // No command was refused.
    let metrics_one = get(one.url("/metrics")).await;
    assert!(!metrics_one.contains("code=\"busy\""), "{metrics_one}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_origin_s_devices_leave_and_a_reconnecting_device_finds_its_session() {
    let library = Library::new();
    let redis = RedisServer::start();
    let [mut one, two] = fleet(&library, &redis).await;
    let (mut a, dev_a) = device(&one, "kitchen", "Speaker").await;
    let (mut b, _) = device(&two, "kitchen", "Phone").await;
    send(
        &mut a,
        json!({"type":"load","tracks":[library.tracks[0], library.tracks[1]],"index":1,"play":false}),
    )
    .await;
    state_where(&mut b, |s| s["index"] == 1 && devices(s).len() == 2).await;

    kill_process(Pid::from_raw(one.pid() as i32).unwrap(), Signal::KILL).unwrap();
    let killed = Instant::now();
    let left = state_where(&mut b, |s| !devices(s).contains(&dev_a)).await;
    let window = killed.elapsed();
    eprintln!("the killed origin's device left after {window:?}");
    assert_eq!(devices(&left).len(), 1, "{left}");
    assert_eq!(left["index"], 1);
    one.stop();

    // The device comes back on the surviving origin: same session, same queue and index.
    let (mut again, _) = device(&two, "kitchen", "Speaker").await;
    let state = next_of(&mut again, "state").await;
    assert_eq!(state["queue"], json!(library.tracks));
    assert_eq!(state["index"], 1);
    assert_eq!(devices(&state).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_bus_messages_and_values_are_refused() {
    let library = Library::new();
    let redis = RedisServer::start();
    let one = origin(&library.lib.library(), &redis);
    bus_up(&one).await;
    let (mut a, _) = device(&one, "den", "A").await;
    send(
        &mut a,
        json!({"type":"load","tracks":[library.tracks[0]],"play":false}),
    )
    .await;
    let loaded = state_where(&mut a, |s| s["track"].is_string()).await;

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("segue:*:session:den")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let channel = keys[0].replace(":session:den", ":events");
    // A forged value (a MAC under another key) and a higher version; then a forged notice,
    // an oversized one and garbage on the channel.
    let forged_state = format!("v1.{}.{{\"id\":\"den\",\"revision\":99}}", "00".repeat(32));
    let _: () = redis::cmd("HSET")
        .arg(&keys[0])
        .arg("v")
        .arg(1000)
        .arg("s")
        .arg(&forged_state)
        .query_async(&mut conn)
        .await
        .unwrap();
    let forged_notice = format!(
        "v1.{}.{{\"kind\":\"session\",\"origin\":\"x\",\"session\":\"den\",\"version\":1000,\"prefetch\":null}}",
        "00".repeat(32)
    );
    for payload in [forged_notice, "x".repeat(64 * 1024), "garbage".into()] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let metrics = poll_until(&one.url("/metrics"), "rejections counted", |m| {
        bus_events(m, "rejected") >= 3
    })
    .await;
    assert_eq!(bus_events(&metrics, "rejected"), 3, "{metrics}");
    let log = one.log().join("\n");
    assert!(log.contains("refused a message"), "{log}");
    // The session still works and its state is the real one, written back over the forgery.
    send(&mut a, json!({"type":"volume","level":0.5})).await;
    let state = state_where(&mut a, |s| s["volume"] == 0.5).await;
    assert_eq!(state["track"], loaded["track"]);
    assert!(state["revision"].as_u64() < Some(99), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_news_from_one_origin_reaches_devices_on_another() {
    let bucket = fixture::BucketLibrary::new();
    let first = bucket.wav("first.wav", 1.5);
    bucket.ingest("ingester", &first);
    let redis = RedisServer::start();
    let bus = redis.url();
    let one = bucket.serve("one", &["--bus", &bus, "--rescan-secs", "1"]);
    // Origin two lists the bucket once an hour: only the bus can tell it sooner.
    let two = bucket.serve("two", &["--bus", &bus, "--rescan-secs", "3600"]);
    bus_up(&one).await;
    bus_up(&two).await;
    let (mut device, _) = device(&two, "news", "Phone").await;

    // Another length: the generated audio differs, so it is another track.
    let second = bucket.wav("second.wav", 2.5);
    let id = bucket.ingest("ingester", &second);
    let news = tokio::time::timeout(client::WAIT * 9 / 10, next_of(&mut device, "library")).await;
    let one_lists = get(one.url("/api/tracks")).await;
    let two_lists = get(two.url("/api/tracks")).await;
    let news = news
        .unwrap_or_else(|_| {
            panic!(
                "no library news on origin two\none lists {one_lists}\ntwo lists {two_lists}\norigin one:\n{}\norigin two:\n{}",
                one.log_tail(20),
                two.log_tail(20)
            )
        });
    let added: Vec<&str> = news["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(added, [id.as_str()], "{news}");
    let track = get(two.url(&format!("/api/tracks/{id}"))).await;
    assert!(track.contains(&id), "{track}");
}
