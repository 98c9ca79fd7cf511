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
//!   back (its state lost): the sessions are written back and shared again;
//! - a forged notice or stored value on the bus is refused and counted, never applied.

#[path = "control_ws/client.rs"]
#[allow(dead_code)] // shared with tests/control_ws.rs, which uses the rest
mod client;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use client::{Socket, hello, next_of, open, send, state_where};
use common::redis::RedisServer;
use common::serve::{ServeCommand, ServeProcess};
use common::{TempLibrary, ingest_one, make_wav};
use futures_util::{SinkExt, StreamExt};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The fleet key every origin of a test shares.
const BUS_KEY: &str = "a test fleet key, 16+ bytes";
/// Heartbeat of the test origins (their devices leave within three of these).
const HEARTBEAT_SECS: &str = "1";
/// Longest wait for a condition polled over HTTP.
const POLL_LIMIT: Duration = Duration::from_secs(20);

/// A library with two short tracks.
struct Library {
    lib: TempLibrary,
    tracks: [String; 2],
}

impl Library {
    fn new() -> Library {
        let lib = TempLibrary::new();
        let a = make_wav(&lib.inputs(), "a.wav", 48_000, 3.0);
        let b = make_wav(&lib.inputs(), "b.wav", 48_000, 2.0);
        let tracks = [
            ingest_one(&lib.library(), &a),
            ingest_one(&lib.library(), &b),
        ];
        Library { lib, tracks }
    }
}

/// An origin on `library` sharing sessions through `redis`.
fn origin(library: &Path, redis: &RedisServer) -> ServeProcess {
    ServeCommand::new(library)
        .args(&["--bus", &redis.url(), "--ws-heartbeat-secs", HEARTBEAT_SECS])
        .envs([("SEGUE_BUS_KEY", BUS_KEY)])
        .start()
}

/// Waits until `server` says its bus is up.
async fn bus_up(server: &ServeProcess) {
    poll_until(&server.url("/healthz"), "bus up", |b| {
        b.contains("bus: redis ok")
    })
    .await;
}

/// Two origins on `library` sharing sessions through `redis`, once both buses are up.
async fn fleet(library: &Library, redis: &RedisServer) -> [ServeProcess; 2] {
    let origins = [
        origin(&library.lib.library(), redis),
        origin(&library.lib.library(), redis),
    ];
    for server in &origins {
        bus_up(server).await;
    }
    origins
}

/// GET `url` as text (blocking, on a worker thread of the test runtime).
async fn get(url: String) -> String {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// Polls `url` until its body satisfies `wanted`; panics after [`POLL_LIMIT`].
async fn poll_until(url: &str, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let body = get(url.to_string()).await;
        if wanted(&body) {
            return body;
        }
        assert!(
            start.elapsed() < POLL_LIMIT,
            "{what}: {url} still says {body:?} after {POLL_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the counter `segue_bus_events_total{event="EVENT"}` in `metrics` (0 if absent).
fn bus_events(metrics: &str, event: &str) -> u64 {
    let prefix = format!("segue_bus_events_total{{event=\"{event}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The device ids of a `state`.
fn devices(state: &Value) -> Vec<String> {
    state["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// A joined device whose messages a task reads all the time (so it answers the server's pings
/// while the test waits on something else), with its sending half.
struct Pumped {
    sink: futures_util::stream::SplitSink<Socket, Message>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Pumped {
    fn new(socket: Socket) -> Pumped {
        let (sink, mut stream) = socket.split();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message
                    && tx.send(serde_json::from_str(&text).unwrap()).is_err()
                {
                    return;
                }
            }
        });
        Pumped { sink, rx }
    }

    async fn send(&mut self, message: Value) {
        self.sink
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next `state` for which `wanted` holds, `None` after [`client::WAIT`].
    async fn state_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let wait = async {
            loop {
                let message = self.rx.recv().await.expect("the connection is open");
                if message["type"] == "state" && wanted(&message) {
                    return message;
                }
            }
        };
        tokio::time::timeout(client::WAIT, wait).await.ok()
    }
}

/// Opens a device on `server` and joins `session` as `name`; returns it and its id.
async fn device(server: &ServeProcess, session: &str, name: &str) -> (Socket, String) {
    let mut socket = open(server.addr, &[]).await.unwrap();
    let id = hello(&mut socket, session, name).await;
    (socket, id)
}

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
    let all_joined = b.state_where(|s| devices(s).len() == 3).await;
    assert!(
        all_joined.is_some(),
        "B never saw three devices\n{}",
        logs()
    );

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
    let local = a2
        .state_where(|s| s["track"] == library.tracks[1].as_str())
        .await;
    assert!(
        local.is_some(),
        "no local state during the outage\n{}",
        logs()
    );

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
