//! An S3-compatible server on 127.0.0.1 as a child process, the one way tests get a bucket:
//! moto's S3 (`moto[server]` from PyPI, pinned in `tests/peers/requirements-s3.txt`), started on
//! a free port, announced by werkzeug's ` * Running on http://ADDR` line, with one bucket
//! created, and stopped (SIGKILL: a bucket that vanishes) on drop.
//!
//! Why moto: it is the candidate that passes `tests/s3_peer.rs` (conditional create, also
//! racing, ranges, paginated listing, conditional GETs, multipart) and starts in about a
//! second. s3s-fs 0.14.1 failed there: racing create-only puts all won, and it ignored
//! `If-None-Match` on GET.
//!
//! The server runs under a small Python wrapper that exits when its stdin closes, and the test
//! holds the other end: when the test process dies, however it dies (a panic, a nextest timeout,
//! SIGKILL), the server goes with it, so no run leaves one behind. A panic also drops the
//! [`S3Server`], which kills it at once.
//!
//! moto keeps its state in memory: [`S3Server::restart`] brings back an empty server on the
//! same port with the bucket created again, not the objects. [`S3Server::pause`] (SIGSTOP)
//! keeps them: the server accepts connections and answers nothing, a bucket that hangs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

/// Longest wait for the server's `Running on` line and its first answer.
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// The bucket every server starts with.
pub const BUCKET: &str = "segue-test";
/// The region the client names (moto accepts any; us-east-1 needs no location constraint).
pub const REGION: &str = "us-east-1";
/// The access key id the client signs with. moto authenticates nobody by default, so any key
/// works; `INITIAL_NO_AUTH_ACTION_COUNT=0` in its environment would make an unknown key a 403
/// `InvalidAccessKeyId` (valid keys then come from moto's IAM API).
pub const ACCESS_KEY_ID: &str = "segue-test-key";
/// The secret key the client signs with.
pub const SECRET_ACCESS_KEY: &str = "segue-test-secret";

/// How long the log must not grow before [`S3Server::requests`] reads it.
const LOG_QUIET: Duration = Duration::from_millis(50);

/// The interpreter that runs moto: `SEGUE_S3_PYTHON`, or `python3` from PATH.
fn python() -> String {
    std::env::var("SEGUE_S3_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Exit code of the wrapper when moto cannot be imported.
const NOT_INSTALLED: i32 = 3;

/// Runs `moto.server.main` with the arguments after `-c`, and exits (without cleanup: there is
/// nothing to save) when stdin reaches its end, that is when the test process is gone.
const WRAPPER: &str = r#"
import os, sys, threading
try:
    from moto.server import main
except ImportError as e:
    sys.stderr.write(f"moto is not importable: {e}\n")
    sys.exit(3)
def orphaned():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=orphaned, daemon=True).start()
main(sys.argv[1:])
"#;

/// A running S3-compatible server with [`BUCKET`] created; killed on drop.
pub struct S3Server {
    child: Option<Child>,
    /// Where it listens (the port stays the same across [`S3Server::restart`]).
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    /// Extra environment of the server process (kept for restarts).
    server_env: Vec<(String, String)>,
}

impl S3Server {
    /// Starts the server on a free port of 127.0.0.1 and creates [`BUCKET`]; panics with the
    /// install command when moto is missing, or with its log when it does not come up within
    /// [`START_LIMIT`].
    pub fn start() -> S3Server {
        Self::start_with_env(Vec::new())
    }

    /// Starts the server like [`S3Server::start`], but checking credentials from the first
    /// request after the (unsigned) creation of [`BUCKET`]: moto's
    /// `INITIAL_NO_AUTH_ACTION_COUNT=1`. Every key this client signs with is then unknown to
    /// moto's IAM, so every signed request is refused (403 `InvalidAccessKeyId`).
    pub fn start_checking_credentials() -> S3Server {
        Self::start_with_env(vec![(
            "INITIAL_NO_AUTH_ACTION_COUNT".to_string(),
            "1".to_string(),
        )])
    }

    /// Starts the server with `server_env` added to its environment.
    fn start_with_env(server_env: Vec<(String, String)>) -> S3Server {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (child, addr) = spawn(0, &log, &server_env);
        let server = S3Server {
            child: Some(child),
            addr,
            log,
            server_env,
        };
        server.create_bucket(BUCKET);
        server
    }

    /// `http://127.0.0.1:PORT`, the endpoint a client names.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `s3://BUCKET/PREFIX`, a library location in the bucket.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{}", prefix.trim_start_matches('/'))
    }

    /// The standard AWS variables that point a client (object_store's
    /// `AmazonS3Builder::from_env`, or `segue` as a child via `Command::envs`) at this server.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// Creates bucket `name` (S3 CreateBucket, unsigned: moto does not check); panics unless
    /// the server answers 200 within [`START_LIMIT`].
    pub fn create_bucket(&self, name: &str) {
        let started = Instant::now();
        loop {
            match put_empty(self.addr, &format!("/{name}")) {
                Ok(200) => return,
                Ok(status) => panic!(
                    "CreateBucket {name} on {}: HTTP {status}\nlog:\n{}",
                    self.addr,
                    self.log_tail(20)
                ),
                Err(_) if started.elapsed() < START_LIMIT => {
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "the S3 server on {} did not answer within {START_LIMIT:?}: {e}\nlog:\n{}",
                    self.addr,
                    self.log_tail(20)
                ),
            }
        }
    }

    /// Kills the server (SIGKILL: no goodbye to its clients), as a bucket that goes away.
    /// Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (moto keeps nothing), with [`BUCKET`]
    /// created again; stops the running one first, if any.
    pub fn restart(&mut self) {
        self.stop();
        let (child, addr) = spawn(self.addr.port(), &self.log, &self.server_env);
        self.child = Some(child);
        assert_eq!(addr, self.addr, "restarted on another address");
        self.create_bucket(BUCKET);
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel and never
    /// answered, a bucket that hangs. Undone by [`S3Server::resume`]; the objects are kept.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    fn signal(&self, signal: Signal) {
        super::signal_peer(self.child.as_ref(), signal, "S3 server");
    }

    /// The server's log so far (werkzeug's request lines and any traceback), across restarts.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The requests served so far, across restarts, as `METHOD /bucket/key?query STATUS`
    /// (from werkzeug's access log): what a test counts to prove a cache spared the bucket.
    /// A line reaches the log a moment after its response reaches the client, so this first
    /// waits for the log to be quiet for [`LOG_QUIET`] (at most a second).
    pub fn requests(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut seen = self.log.lock().unwrap().len();
        while Instant::now() < deadline {
            thread::sleep(LOG_QUIET);
            let now = self.log.lock().unwrap().len();
            if now == seen {
                break;
            }
            seen = now;
        }
        self.requests_now()
    }

    /// The requests logged so far, as [`S3Server::requests`] gives them but without waiting for
    /// the log to be quiet: for polling while a client is busy (the last few may be missing).
    pub fn requests_now(&self) -> Vec<String> {
        self.log()
            .iter()
            .filter_map(|line| {
                // 127.0.0.1 - - [date] "GET /segue-test/k HTTP/1.1" 200 -
                let (_, quoted) = line.split_once(" \"")?;
                let (request, rest) = quoted.split_once('"')?;
                let (target, _) = request.rsplit_once(' ')?;
                let status = rest.split_whitespace().next()?;
                Some(format!("{target} {status}"))
            })
            .collect()
    }

    /// The last `n` lines of [`S3Server::log`], for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        log[log.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // A paused server dies of SIGKILL too.
        self.stop();
    }
}

/// Spawns moto on 127.0.0.1:`port` (0: any free port) and waits for its `Running on` line;
/// its stderr goes to `log`.
fn spawn(
    port: u16,
    log: &Arc<Mutex<Vec<String>>>,
    server_env: &[(String, String)],
) -> (Child, SocketAddr) {
    let python = python();
    let mut child = Command::new(&python)
        .args(["-c", WRAPPER, "-H", "127.0.0.1", "-p", &port.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .envs(server_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {python} for the S3 test server ({e}): install Python 3 and \
                 `pip install -r tests/peers/requirements-s3.txt` (.ci/run does), or name the \
                 interpreter in SEGUE_S3_PYTHON"
            )
        });
    let (announced, announcement) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(log);
    thread::spawn(move || read_log(stderr, &sink, &announced));
    let started = Instant::now();
    loop {
        match announcement.recv_timeout(Duration::from_millis(50)) {
            Ok(addr) => return (child, addr),
            Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < START_LIMIT => {
                if let Ok(Some(status)) = child.try_wait() {
                    fail_start(&python, status.code(), log);
                }
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok().and_then(|s| s.code());
                fail_start(&python, status, log);
            }
        }
    }
}

/// Panics with why the server did not start: not installed, or its log.
fn fail_start(python: &str, code: Option<i32>, log: &Mutex<Vec<String>>) -> ! {
    // Give the reader a moment to collect the last lines.
    thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap().join("\n");
    if code == Some(NOT_INSTALLED) {
        panic!(
            "the S3 test server is not installed for {python}: \
             `{python} -m pip install -r tests/peers/requirements-s3.txt` (.ci/run does)\n{log}"
        );
    }
    panic!(
        "the S3 test server (moto) did not announce `Running on` within {START_LIMIT:?} \
         (exit code {code:?})\nlog:\n{log}"
    );
}

/// Keeps every stderr line in `log`; sends the address of the first ` * Running on
/// http://ADDR` line to `announced`. Reads to the end so the server never blocks on its pipe.
fn read_log(stderr: ChildStderr, log: &Mutex<Vec<String>>, announced: &mpsc::Sender<SocketAddr>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(addr) = line
            .split_once("Running on http://")
            .and_then(|(_, rest)| rest.trim().parse().ok())
        {
            let _ = announced.send(addr);
        }
        log.lock().unwrap().push(line);
    }
}

/// Sends `PUT path` with an empty body to `addr` and returns the response's status code.
fn put_empty(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))
}

// ---------------------------------------------------------------------------------------------
// Added for tests/bucket_serve.rs: `segue` processes on "machines" of their own, sharing the
// bucket and nothing else.

impl S3Server {
    /// [`S3Server::env`] plus `XDG_CACHE_HOME=state`: the environment of a `segue` process on a
    /// machine of its own, whose bucket library keeps its catalog (a local, rebuildable cache)
    /// under `state` instead of the user's `~/.cache`, apart from every other process's.
    pub fn machine_env(&self, state: &std::path::Path) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        vars.push((
            "XDG_CACHE_HOME".into(),
            state.to_string_lossy().into_owned(),
        ));
        vars
    }

    /// Runs `segue ingest --json --library s3://BUCKET/PREFIX inputs` as a process of the
    /// machine whose state is `state` (see [`S3Server::machine_env`]); panics unless it exits
    /// 0, and returns the track id of each input, in order.
    pub fn ingest_from_machine(
        &self,
        prefix: &str,
        state: &std::path::Path,
        inputs: &[&std::path::Path],
    ) -> Vec<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_segue"))
            .args(["ingest", "--json", "--library", &self.url(prefix)])
            .args(inputs)
            .envs(self.machine_env(state))
            .stdin(Stdio::null())
            .output()
            .expect("run segue ingest");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "segue ingest into {} failed ({}):\n{stdout}\n{stderr}\nS3 log:\n{}",
            self.url(prefix),
            out.status,
            self.log_tail(20)
        );
        stdout
            .lines()
            .map(|line| {
                let json: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}\n{stderr}"));
                json["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no track id in {line}"))
                    .to_string()
            })
            .collect()
    }
}
