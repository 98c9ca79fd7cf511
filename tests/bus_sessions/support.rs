//! The fleet the bus tests run: a library, origins on one redis-server, and devices.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::{self, Socket, hello, open};
use crate::common::redis::RedisServer;
use crate::common::serve::{ServeCommand, ServeProcess};
use crate::common::{TempLibrary, ingest_one, make_wav};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// The fleet key every origin of a test shares.
pub const BUS_KEY: &str = "a test fleet key, 16+ bytes";
/// Heartbeat of the test origins (their devices leave within three of these).
pub const HEARTBEAT_SECS: &str = "1";
/// Longest wait for a condition polled over HTTP.
pub const POLL_LIMIT: Duration = Duration::from_secs(20);

/// A library with two short tracks.
pub struct Library {
    /// The temp library.
    pub lib: TempLibrary,
    /// Its two track ids.
    pub tracks: [String; 2],
}

impl Library {
    pub fn new() -> Library {
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
pub fn origin(library: &Path, redis: &RedisServer) -> ServeProcess {
    ServeCommand::new(library)
        .args(&["--bus", &redis.url(), "--ws-heartbeat-secs", HEARTBEAT_SECS])
        .envs([("SEGUE_BUS_KEY", BUS_KEY)])
        .start()
}

/// Waits until `server` says its bus is up.
pub async fn bus_up(server: &ServeProcess) {
    poll_until(&server.url("/healthz"), "bus up", |b| {
        b.contains("bus: redis ok")
    })
    .await;
}

/// Two origins on `library` sharing sessions through `redis`, once both buses are up.
pub async fn fleet(library: &Library, redis: &RedisServer) -> [ServeProcess; 2] {
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
pub async fn get(url: String) -> String {
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
pub async fn poll_until(url: &str, what: &str, wanted: impl Fn(&str) -> bool) -> String {
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
pub fn bus_events(metrics: &str, event: &str) -> u64 {
    let prefix = format!("segue_bus_events_total{{event=\"{event}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The device ids of a `state`.
pub fn devices(state: &Value) -> Vec<String> {
    state["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// A joined device whose messages a task reads all the time (so it answers the server's pings
/// while the test waits on something else), with its sending half.
pub struct Pumped {
    sink: futures_util::stream::SplitSink<Socket, Message>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Pumped {
    pub fn new(socket: Socket) -> Pumped {
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

    pub async fn send(&mut self, message: Value) {
        self.sink
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// Every `state` that arrives in the next `window`.
    pub async fn states_within(&mut self, window: Duration) -> Vec<Value> {
        let end = tokio::time::Instant::now() + window;
        let mut states = Vec::new();
        while let Ok(Some(message)) = tokio::time::timeout_at(end, self.rx.recv()).await {
            if message["type"] == "state" {
                states.push(message);
            }
        }
        states
    }

    /// The next `state` for which `wanted` holds, `None` after [`client::WAIT`].
    pub async fn state_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
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
pub async fn device(server: &ServeProcess, session: &str, name: &str) -> (Socket, String) {
    let mut socket = open(server.addr, &[]).await.unwrap();
    let id = hello(&mut socket, session, name).await;
    (socket, id)
}
