//! A Redis server on 127.0.0.1 as a child process, the one way tests get a bus: Debian's
//! `redis-server` (installed by `.ci/run`), started on a free port in a temp dir, without
//! persistence (`--save "" --appendonly no`), with `--protected-mode yes`, ready once it answers
//! `PING`, and killed (SIGKILL) on drop.
//!
//! Redis cannot listen on port 0 and report the port it got, so [`RedisServer::start`] asks the
//! kernel for a free port, releases it and starts Redis there; another process may take it in
//! between, so a start that fails with "Address already in use" is retried on a new port.
//!
//! The server runs under `setpriv --pdeathsig KILL`, which execs it with the parent-death
//! signal set (no `unsafe` `pre_exec` here): when the thread that started it dies, however the
//! test process dies (a panic, a nextest timeout, SIGKILL), Redis gets SIGKILL, so no run leaves
//! one behind. The signal follows the starting thread, not the process: start the server from
//! the test's own thread (what `#[tokio::test]` bodies run on), not from a task that may end
//! first. A panic also drops the [`RedisServer`], which kills it at once.
//!
//! Nothing is persisted: [`RedisServer::restart`] brings back an empty server on the same port
//! (every key and every subscription is gone, as after a crash of a Redis without AOF).
//! [`RedisServer::pause`] (SIGSTOP) keeps them: the server accepts connections and answers
//! nothing, a Redis that hangs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

/// The server binary (Debian's `redis-server` package).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// Longest wait for a started server to answer `PING`.
pub const START_LIMIT: Duration = Duration::from_secs(20);
/// Starts on a fresh port after a port clash, at most.
const PORT_ATTEMPTS: usize = 10;

/// A running `redis-server` on 127.0.0.1; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// Where it listens (the port stays the same across [`RedisServer::restart`]).
    pub addr: SocketAddr,
    /// Its working directory (`--dir`), empty since nothing is persisted.
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl RedisServer {
    /// Starts the server on a free port of 127.0.0.1 and waits until it answers `PING`;
    /// panics with the install command when `redis-server` is missing, or with its log when it
    /// does not answer within [`START_LIMIT`].
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("a temp dir for redis-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn(port, dir.path(), &log) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                        dir,
                        log,
                    };
                }
                Err(Clash) => continue,
            }
        }
        panic!(
            "redis-server found no free port in {PORT_ATTEMPTS} attempts\nlog:\n{}",
            tail(&log, 20)
        );
    }

    /// `redis://127.0.0.1:PORT`, the URL a client opens.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients, nothing saved), as a Redis that
    /// crashes. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it answers `PING`; stops the
    /// running one first, if any. The new server is empty: keys and subscriptions are lost.
    pub fn restart(&mut self) {
        self.stop();
        match spawn(self.addr.port(), self.dir.path(), &self.log) {
            Ok(child) => self.child = Some(child),
            Err(Clash) => panic!(
                "another process took port {} during the restart\nlog:\n{}",
                self.addr.port(),
                self.log_tail(20)
            ),
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel and never
    /// answered, a Redis that hangs. Undone by [`RedisServer::resume`]; the keys are kept.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    fn signal(&self, signal: Signal) {
        super::signal_peer(self.child.as_ref(), signal, "Redis server");
    }

    /// The last `n` lines of the server's log, across restarts, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server dies of SIGKILL too.
        self.stop();
    }
}

/// A start that failed because the port was taken (the caller may try another).
struct Clash;

/// A port that was free a moment ago on 127.0.0.1 (the kernel's pick for port 0, released).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("the bound address").port()
}

/// Starts `redis-server` on 127.0.0.1:`port` in `dir` and waits until it answers `PING`; its
/// log (stdout) goes to `log`. `Err(Clash)` when the port was taken.
fn spawn(port: u16, dir: &Path, log: &Arc<Mutex<Vec<String>>>) -> Result<Child, Clash> {
    let mut child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", REDIS_SERVER])
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ])
        .args(["--daemonize", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run setpriv {REDIS_SERVER} ({e}): `apt-get install redis-server` \
                 (.ci/run does)"
            )
        });
    let stdout = child.stdout.take().expect("piped stdout");
    let sink = Arc::clone(log);
    thread::spawn(move || read_log(stdout, &sink));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Give the reader a moment to collect the last lines.
            thread::sleep(Duration::from_millis(100));
            let log = tail(log, 20);
            if log.contains("Address already in use") {
                return Err(Clash);
            }
            panic!("redis-server exited ({status}) before answering PING\nlog:\n{log}");
        }
        if ping(addr).is_ok() {
            return Ok(child);
        }
        if started.elapsed() > START_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-server on {addr} did not answer PING within {START_LIMIT:?}\nlog:\n{}",
                tail(log, 20)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends an inline `PING` to `addr`; Ok once the answer is `+PONG`.
fn ping(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"PING\r\n")?;
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer)?;
    if &answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "PING answered {:?}",
            String::from_utf8_lossy(&answer)
        )))
    }
}

/// Keeps every log line; reads to the end so the server never blocks on its pipe.
fn read_log(stdout: ChildStdout, log: &Mutex<Vec<String>>) {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        log.lock().unwrap().push(line);
    }
}

/// The last `n` lines of `log`.
fn tail(log: &Mutex<Vec<String>>, n: usize) -> String {
    let log = log.lock().unwrap();
    log[log.len().saturating_sub(n)..].join("\n")
}
