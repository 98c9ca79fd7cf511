//! Helpers of `tests/server_http.rs`: a temp library made with `ingest_batch`, a server on a
//! real socket (port 0) with a oneshot shutdown, and a raw HTTP/1.1 client, so requests go on
//! the wire exactly as written (no URL normalization, any header).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use segue::catalog::TrackRecord;
use segue::config::{DEFAULT_LADDER, DEFAULT_SEGMENT_SECONDS, IngestConfig, ServeConfig};
use segue::ingest::batch::ingest_batch;
use segue::server::{AppState, ServerError, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::common::RawResponse as Resp;
use crate::common::{QuietObserver, ServeCommand, ServeProcess, TempLibrary, make_wav};

/// Length of the generated test track, in seconds.
pub const SECONDS: f64 = 3.0;
/// Cache-Control of content-addressed files.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Upper bound of any one network exchange or server stop in these tests.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Generates a `seconds`-long 48 kHz WAV named `name` and ingests it into `lib`; returns its id.
pub fn ingest(lib: &TempLibrary, name: &str, seconds: f64) -> String {
    let input = make_wav(&lib.inputs(), name, 48_000, seconds);
    let config = IngestConfig::new(
        lib.library().into(),
        DEFAULT_LADDER,
        DEFAULT_SEGMENT_SECONDS,
        None,
    )
    .unwrap();
    let reports = ingest_batch(&[input], &config, &QuietObserver).unwrap();
    match &reports[0].result {
        Ok(outcome) => outcome.id().to_string(),
        Err(e) => panic!("ingest {name}: {e}"),
    }
}

/// A temp library holding one ingested track.
pub struct Fixture {
    /// The library (and its inputs).
    pub lib: TempLibrary,
    /// The track's id.
    pub id: String,
    /// The track's record.
    pub record: TrackRecord,
}

impl Fixture {
    /// Ingests one `seconds`-long track (on a blocking thread).
    pub async fn new(seconds: f64) -> Fixture {
        tokio::task::spawn_blocking(move || {
            let lib = TempLibrary::new();
            let id = ingest(&lib, "track.wav", seconds);
            let record = lib.record(&id);
            Fixture { lib, id, record }
        })
        .await
        .unwrap()
    }

    /// `tracks/<id>` on disk.
    pub fn track_dir(&self) -> PathBuf {
        self.lib.layout().track_dir(&self.id)
    }

    /// URL path of a file of the track (`master.m3u8`, `<dir>/1.m4s`).
    pub fn url(&self, relative: &str) -> String {
        format!("/media/{}/{relative}", self.id)
    }

    /// Rendition directory `i` (relative to the track directory).
    pub fn rendition_dir(&self, i: usize) -> &str {
        &self.record.renditions[i].dir
    }

    /// URL path and bytes on disk of the first media segment of the top rendition.
    pub fn segment(&self) -> (String, Vec<u8>) {
        let rel = format!(
            "{}/1.m4s",
            self.rendition_dir(self.record.renditions.len() - 1)
        );
        let bytes = std::fs::read(self.track_dir().join(&rel)).unwrap();
        (self.url(&rel), bytes)
    }
}

/// A server running on a real socket.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Running {
    /// Starts `serve` on 127.0.0.1:0 for `library` with CORS origin `*` and a 64 MiB cache.
    pub async fn start(library: &Path) -> Running {
        Running::start_with(library, "*", 64).await
    }

    /// Starts `serve` with the given CORS origin and cache size.
    pub async fn start_with(library: &Path, cors_origin: &str, cache_mib: u64) -> Running {
        let config = ServeConfig::new(
            library.to_path_buf().into(),
            "127.0.0.1:0",
            cors_origin,
            cache_mib,
        )
        .unwrap();
        Running::start_config(config).await
    }

    /// Starts `serve` with `config` (its address is ignored: 127.0.0.1:0).
    pub async fn start_config(config: ServeConfig) -> Running {
        let state = tokio::task::spawn_blocking(move || AppState::new(&config))
            .await
            .unwrap()
            .unwrap();
        Running::start_state(state).await
    }

    /// Starts `serve` with `state` (the caller may keep a clone to look inside the server).
    pub async fn start_state(state: AppState) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(listener, state, shutdown));
        Running {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown (without waiting).
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether `serve` has returned.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Signals shutdown and waits for `serve` to return Ok.
    pub async fn stop(mut self) {
        self.signal_shutdown();
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(LIMIT, task).await;
            result.expect("server stops in time").unwrap().unwrap();
        }
    }

    /// GET `target` with `headers`.
    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        send(self.addr, "GET", target, headers).await
    }

    /// The ETag of a plain GET of `target` (which must carry one).
    pub async fn etag(&self, target: &str) -> String {
        let resp = self.get(target, &[]).await;
        let etag = resp.header("etag");
        etag.unwrap_or_else(|| panic!("{target}: no ETag"))
            .to_string()
    }

    /// The `/metrics` text once `series` has reached `at_least`, or after about 5 s (the caller
    /// then asserts on what it got). Counters that move after the bytes are on the wire (bytes
    /// sent from files) or after a read the client cannot see (WebSocket messages) may lag the
    /// client by a scheduling slice on a loaded machine.
    pub async fn metrics_once(&self, series: &str, at_least: f64) -> String {
        let mut text = String::new();
        for _ in 0..200 {
            text = String::from_utf8(self.get("/metrics", &[]).await.body).unwrap();
            if metric(&text, series) >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// `segue serve` as a child process ([`ServeProcess`]) on `library` with `args` after the
/// library and address, started on a blocking thread.
pub async fn spawn_serve(library: &Path, args: &[&str]) -> ServeProcess {
    let command = ServeCommand::new(library).args(args);
    tokio::task::spawn_blocking(move || command.start())
        .await
        .unwrap()
}

/// Stops `server` with SIGTERM (on a blocking thread); its exit code, and the server, whose
/// log and stdout are then complete.
pub async fn terminate(mut server: ServeProcess) -> (Option<i32>, ServeProcess) {
    tokio::task::spawn_blocking(move || {
        let status = server.stop().expect("segue serve stops on SIGTERM");
        (status.code(), server)
    })
    .await
    .unwrap()
}

/// Sends one request on a new connection (`Connection: close`) and reads the whole response.
pub async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(&request_bytes(addr, method, target, headers))
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("response in time");
    let (head, body) = split_head(&raw).expect("a complete response head");
    let resp = parse_head(head, body.to_vec());
    if method != "HEAD"
        && let Some(len) = resp.header("content-length")
    {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            resp.body.len(),
            "Content-Length"
        );
    }
    resp
}

/// The bytes of a request.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Splits a response at the blank line after its head.
pub fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&raw[..at], &raw[at + 4..]))
}

/// Parses a status line and header fields.
pub fn parse_head(head: &[u8], body: Vec<u8>) -> Resp {
    let head = String::from_utf8(head.to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    Resp {
        status,
        headers,
        body,
    }
}

/// The value of the sample `series` (exact name and labels) in a metrics exposition.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Decodes `url` with ffmpeg (stream `map` of the input, if given) to stereo f32; returns the
/// number of sample frames. ffmpeg only warns on a failed segment, so the count is the check.
pub async fn ffmpeg_frames(url: &str, map: Option<&str>) -> usize {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i", url]);
    if let Some(map) = map {
        cmd.args(["-map", map]);
    }
    cmd.args(["-f", "f32le", "-ac", "2", "-"])
        .kill_on_drop(true);
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("ffmpeg in time")
        .expect("ffmpeg is installed (.ci/run installs it)");
    out.stdout.len() / 8
}

/// A fresh library with one track, and a server on it.
pub async fn setup() -> (Fixture, Running) {
    let fixture = Fixture::new(SECONDS).await;
    let server = Running::start(&fixture.lib.library()).await;
    (fixture, server)
}
