//! `segue serve` as a child process, the one way every test binary starts the real server:
//! on 127.0.0.1:0 with the binary's default log filter (its access log at INFO), announced by
//! its one stdout line `listening on http://ADDR`, stopped with SIGTERM (a graceful stop) and
//! SIGKILL after [`STOP_LIMIT`].
//!
//! Its log (stderr) is kept in memory for failure messages and log assertions, or, for a long
//! run whose log would not fit (the soak), written to a file with its stdout.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Longest wait for the `listening on` line.
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for a graceful stop after SIGTERM, before SIGKILL.
pub const STOP_LIMIT: Duration = Duration::from_secs(30);

/// How to start `segue serve`: the library and the flags after `--addr`, and where its output
/// goes. [`ServeProcess::start`] covers the common case.
#[derive(Debug, Clone)]
pub struct ServeCommand {
    program: PathBuf,
    library: PathBuf,
    args: Vec<String>,
    log_file: Option<PathBuf>,
    envs: Vec<(String, String)>,
}

impl ServeCommand {
    /// The built `segue` serving `library`, no extra flags, its log kept in memory.
    pub fn new(library: &Path) -> ServeCommand {
        ServeCommand {
            program: env!("CARGO_BIN_EXE_segue").into(),
            library: library.to_path_buf(),
            args: Vec::new(),
            log_file: None,
            envs: Vec::new(),
        }
    }

    /// Serves `library` given as text (a directory or `s3://BUCKET/PREFIX`).
    pub fn of(library: &str) -> ServeCommand {
        ServeCommand::new(Path::new(library))
    }

    /// Sets environment variables of the server (the AWS_* of a bucket library, its state dir).
    pub fn envs<K: ToString, V: ToString>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> ServeCommand {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        self.envs.extend(vars);
        self
    }

    /// Adds flags after `--library … --addr 127.0.0.1:0`.
    pub fn args(mut self, args: &[&str]) -> ServeCommand {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs `program` instead of the built `segue` (another build under the same checks).
    pub fn program(mut self, program: PathBuf) -> ServeCommand {
        self.program = program;
        self
    }

    /// Appends stdout and stderr to `path` instead of keeping the log in memory.
    pub fn log_to(mut self, path: &Path) -> ServeCommand {
        self.log_file = Some(path.to_path_buf());
        self
    }

    /// Spawns the server and waits ([`START_LIMIT`] at most) for its `listening on` line.
    pub fn start(self) -> ServeProcess {
        let log_file = self.log_file.as_ref().map(|path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("open the server log {}: {e}", path.display()))
        });
        let stderr = match &log_file {
            Some(file) => Stdio::from(file.try_clone().expect("dup the server log")),
            None => Stdio::piped(),
        };
        let mut child = Command::new(&self.program)
            .arg("serve")
            .arg("--library")
            .arg(&self.library)
            .args(["--addr", "127.0.0.1:0"])
            .args(&self.args)
            .env_remove("RUST_LOG")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} serve: {e}", self.program.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            let sink = Arc::clone(&log);
            readers.push(thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            }));
        }
        let stdout_rest = Arc::new(Mutex::new(Vec::new()));
        let (announced, announcement) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let rest = Arc::clone(&stdout_rest);
        readers.push(thread::spawn(move || {
            read_stdout(stdout, log_file, &announced, &rest)
        }));
        let mut server = ServeProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            origin: String::new(),
            log,
            log_file: self.log_file,
            stdout_rest,
            readers,
        };
        server.await_announcement(&announcement);
        server
    }
}

/// Reads the server's stdout: the first line goes to `announced`, every later one to `rest`;
/// all of it to `log_file` too, if there is one. Keeps reading so the server never blocks.
fn read_stdout(
    stdout: ChildStdout,
    mut log_file: Option<File>,
    announced: &mpsc::Sender<String>,
    rest: &Mutex<Vec<String>>,
) {
    for (i, line) in BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .enumerate()
    {
        if let Some(file) = &mut log_file {
            let _ = writeln!(file, "{line}");
        }
        if i == 0 {
            let _ = announced.send(line);
        } else {
            rest.lock().unwrap().push(line);
        }
    }
}

/// A running `segue serve` on 127.0.0.1:0, started by [`ServeCommand`]; stopped on drop.
pub struct ServeProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub origin: String,
    log: Arc<Mutex<Vec<String>>>,
    log_file: Option<PathBuf>,
    stdout_rest: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl ServeProcess {
    /// Starts the built `segue serve` on `library` with `extra` flags, its log in memory.
    pub fn start(library: &Path, extra: &[&str]) -> ServeProcess {
        ServeCommand::new(library).args(extra).start()
    }

    fn await_announcement(&mut self, announcement: &mpsc::Receiver<String>) {
        let started = Instant::now();
        let line = loop {
            match announcement.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < START_LIMIT => {}
                Err(_) => {
                    let status = self.stop();
                    panic!(
                        "segue serve printed no `listening on` line within {START_LIMIT:?} \
                         (exit: {status:?})\nstderr:\n{}",
                        self.stderr_text()
                    )
                }
            }
        };
        match line
            .strip_prefix("listening on http://")
            .and_then(|a| a.trim().parse().ok())
        {
            Some(addr) => {
                self.addr = addr;
                self.origin = format!("http://{addr}");
            }
            None => panic!(
                "segue serve printed {line:?}, not `listening on http://…`\nstderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines written to stderr so far (the access log); empty with [`ServeCommand::log_to`].
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The last `n` lines of [`ServeProcess::log`], for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// stderr so far, from memory or the log file, for failure messages.
    fn stderr_text(&self) -> String {
        match &self.log_file {
            Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
            None => self.log().join("\n"),
        }
    }

    /// The stdout lines after the announcement (there should be none); complete once stopped.
    pub fn stdout_after_announcement(&self) -> Vec<String> {
        self.stdout_rest.lock().unwrap().clone()
    }

    /// `origin` joined with a server-relative path or URL (`media/…` or `/media/…`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.origin, path.trim_start_matches('/'))
    }

    /// Stops the server with SIGTERM (graceful) and returns its exit status; after
    /// [`STOP_LIMIT`] kills it and returns `None`. Once it returns, [`ServeProcess::log`] and
    /// [`ServeProcess::stdout_after_announcement`] hold everything the server wrote.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.join_readers();
            return Some(status);
        }
        // ESRCH (exited in between) is fine: it is reaped below.
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        let deadline = Instant::now() + STOP_LIMIT;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        status
    }

    /// Waits (briefly: a child the server left behind may hold its pipes) for the readers to
    /// see the end of its output.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        for reader in std::mem::take(&mut self.readers) {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
