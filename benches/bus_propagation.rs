//! How long a control command takes to reach a device on another origin of a fleet
//! (`serve --bus redis://…`): `cargo bench --bench bus_propagation`.
//!
//! It starts Debian's `redis-server` and two release `segue serve` origins on loopback, on one
//! library holding media/samples/06-two-note-chime.wav, joins device A to origin one and device
//! B to origin two in one session, and then, `ROUNDS` times, sends a `volume` command on A and
//! times until B's `state` shows it (and, as the baseline, until A's own `state` does: the
//! same-origin path). The path measured is everything a listener waits for: WebSocket frame
//! in, compare-and-set in Redis (one Lua script, the notice published inside it), the other
//! origin's subscription, its re-read of the session, and its WebSocket frame out.
//!
//! Issue 14's target: median <= 50 ms, p99 <= 100 ms between two origins.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

/// Commands timed (after `WARMUP` untimed ones).
const ROUNDS: usize = 1000;
/// Commands sent first, untimed (connections, script cache, allocator warm).
const WARMUP: usize = 50;
/// Longest wait for one state.
const WAIT: Duration = Duration::from_secs(5);

type Socket = WebSocketStream<TcpStream>;

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn redis_server(dir: &Path) -> (Process, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Process(child), url)
}

fn origin(segue: &str, library: &Path, redis: &str) -> (Process, String) {
    let mut child = Command::new(segue)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--bus",
            redis,
            "--library",
        ])
        .arg(library)
        .env("SEGUE_BUS_KEY", "the benchmark's fleet key")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("segue serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the announcement");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .expect("listening on …")
        .to_string();
    (Process(child), addr)
}

async fn open(addr: &str) -> Socket {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "segue.control.v1".parse().unwrap(),
    );
    let tcp = TcpStream::connect(addr).await.unwrap();
    client_async(request, tcp).await.unwrap().0
}

async fn next_where(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            if let Some(Ok(Message::Text(text))) = socket.next().await {
                let value: Value = serde_json::from_str(&text).unwrap();
                if wanted(&value) {
                    return value;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("a state in time")
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: n={} median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let segue = env!("CARGO_BIN_EXE_segue");
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("library");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("media/samples/06-two-note-chime.wav");
    let ingest = Command::new(segue)
        .args(["ingest", "--json", "--library"])
        .arg(&library)
        .arg(&sample)
        .output()
        .expect("segue ingest");
    assert!(ingest.status.success(), "ingest failed");
    let (_redis, url) = redis_server(dir.path());
    let (_one, addr_one) = origin(segue, &library, &url);
    let (_two, addr_two) = origin(segue, &library, &url);
    // Until both buses are up (their first heartbeat), a hello could land before the bus.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut a = open(&addr_one).await;
    let mut b = open(&addr_two).await;
    let hello = |name: &str| json!({"type":"hello","device":{"name":name},"session":"bench"});
    send(&mut a, hello("A")).await;
    next_where(&mut a, |v| v["type"] == "welcome").await;
    send(&mut b, hello("B")).await;
    next_where(&mut b, |v| v["type"] == "welcome").await;
    next_where(&mut a, |v| {
        v["type"] == "state" && v["devices"].as_array().map(Vec::len) == Some(2)
    })
    .await;

    let (mut remote, mut local) = (Vec::new(), Vec::new());
    for round in 0..WARMUP + ROUNDS {
        // A new value each round, so each command is a visible change.
        let level = (round % 1000) as f64 / 1000.0 + 0.0005;
        let is_it = move |v: &Value| v["type"] == "state" && v["volume"].as_f64() == Some(level);
        let start = Instant::now();
        send(&mut a, json!({"type":"volume","level":level})).await;
        let (seen_a, seen_b) = tokio::join!(
            async {
                next_where(&mut a, is_it).await;
                start.elapsed()
            },
            async {
                next_where(&mut b, is_it).await;
                start.elapsed()
            }
        );
        if round >= WARMUP {
            local.push(seen_a);
            remote.push(seen_b);
        }
        // Within the default rate limit (20 commands a second, twice that as a burst).
        tokio::time::sleep(Duration::from_millis(55)).await;
    }
    report("same origin (A -> A)", local);
    report("other origin (A -> B)", remote);
}
