//! Ingesting one file in a separate process (`segue ingest-worker`), so a hostile file cannot
//! take down the batch or the server.
//!
//! A panic is caught in-process, but some failures cannot be: a decoder that asks for a huge
//! allocation aborts the whole process (Rust's allocation-failure handler), a stack overflow
//! kills it, and an unbounded allocation that succeeds starves everything else on the machine.
//! So each file is decoded, encoded and staged by a child process with an address-space limit
//! (`RLIMIT_AS`); the parent reads its progress and its result from stdout, line by line, and
//! turns any abnormal end (a signal, an exit without a result) into an error for that file
//! alone. The child stages into its own directory, locked for as long as the child lives,
//! which `LibraryLayout` sweeps once the lock is free, so a killed worker leaves nothing visible
//! in the library.
//!
//! The protocol: the parent passes the whole [`IngestConfig`] as JSON (`--config`, see
//! [`encode_config`]; the file is an argument of its own, as its name need not be UTF-8). On
//! its stdout the child prints `progress DECODED TOTAL|-` lines, then one `result JSON` line
//! with a [`WorkerResult`]: the outcome, or the error as its kind and message.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use rustix::process::{Resource, Rlimit, Signal};
use serde::{Deserialize, Serialize};

use super::error::{ErrorReport, IngestError, IngestErrorKind};
use super::pipeline::{IngestOutcome, Progress, ingest_file};
use crate::config::{IngestConfig, WorkerConfig};
use crate::store::Library;

/// The last line a worker prints.
#[derive(Debug, Serialize, Deserialize)]
pub enum WorkerResult {
    /// The file was ingested (or was already there).
    Ok(IngestOutcome),
    /// It failed: the error's kind and message.
    Err(ErrorReport),
}

/// Most stderr kept from a worker, for the error message of a crash.
const STDERR_TAIL: usize = 2048;

/// The settings as the parent passes them to a worker (`--config`): the whole config, so no
/// field can be dropped on the way.
pub fn encode_config(config: &IngestConfig) -> Result<String, IngestError> {
    serde_json::to_string(config).map_err(|e| {
        IngestError::Internal(format!(
            "the ingest settings cannot be passed to a worker: {e}"
        ))
    })
}

/// The settings as a worker reads them back from [`encode_config`]'s text.
pub fn decode_config(text: &str) -> Result<IngestConfig, IngestError> {
    serde_json::from_str(text)
        .map_err(|e| IngestError::Internal(format!("the worker cannot read its settings: {e}")))
}

/// Runs `ingest_file` for `file` in a worker process (parent side).
pub fn ingest_in_worker(
    file: &Path,
    config: &IngestConfig,
    worker: &WorkerConfig,
    library: &Library,
    progress: &dyn Progress,
) -> Result<IngestOutcome, IngestError> {
    // The worker runs under the limits of `worker`, whatever `config.worker` says.
    let settings = encode_config(&IngestConfig {
        worker: Some(worker.clone()),
        ..config.clone()
    })?;
    let mut command = Command::new(&worker.program);
    command.arg("ingest-worker").args(["--config", &settings]);
    // The worker logs only errors (kept for the failure message) unless the user asked for a
    // log with RUST_LOG: then it logs what was asked, and its log is passed on to ours.
    let asked = std::env::var("RUST_LOG").ok();
    let forward = asked.is_some();
    let mut child = command
        .arg("--")
        .arg(file)
        .env("RUST_LOG", asked.as_deref().unwrap_or("error"))
        .env(PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| IngestError::Internal(format!("cannot start the ingest worker: {e}")))?;
    let stderr = child.stderr.take();
    let tail = Mutex::new(Vec::new());
    let mut result = None;
    std::thread::scope(|scope| {
        if let Some(mut stderr) = stderr {
            let tail = &tail;
            scope.spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stderr.read(&mut buf) {
                    if forward {
                        // Our stderr gone is no reason to stop collecting the tail.
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    }
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    tail.extend_from_slice(&buf[..n]);
                    let excess = tail.len().saturating_sub(STDERR_TAIL);
                    tail.drain(..excess);
                }
            });
        }
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("progress ") {
                    let mut parts = rest.split(' ');
                    let decoded = parts.next().and_then(|d| d.parse().ok()).unwrap_or(0);
                    let total = parts.next().and_then(|t| t.parse().ok());
                    progress.advance(decoded, total);
                } else if let Some(json) = line.strip_prefix("result ") {
                    result = Some(serde_json::from_str::<WorkerResult>(json));
                }
            }
        }
    });
    let status = child
        .wait()
        .map_err(|e| IngestError::Internal(format!("ingest worker lost: {e}")))?;
    match result {
        Some(Ok(WorkerResult::Ok(outcome))) if status.success() => Ok(outcome),
        Some(Ok(WorkerResult::Err(report))) => Err(IngestError::Worker(report)),
        // A worker that ended well but printed a result we cannot read (a cut line from a
        // worker that died is a death, below).
        Some(Err(e)) if status.success() => Err(IngestError::Internal(format!(
            "the ingest worker's result cannot be read: {e}"
        ))),
        _ => {
            // Died without a verdict: whatever it staged is swept (its lock is free now).
            library.sweep_staging();
            let tail = tail.into_inner().unwrap_or_else(|p| p.into_inner());
            let stderr = String::from_utf8_lossy(&tail);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(IngestError::Worker(ErrorReport {
                kind: IngestErrorKind::WorkerDied,
                message: describe_death(status, worker.memory_bytes, last),
            }))
        }
    }
}

/// A message for a worker that ended without a result.
fn describe_death(status: std::process::ExitStatus, limit: u64, last_stderr: &str) -> String {
    const SIGABRT: i32 = Signal::ABORT.as_raw();
    const SIGKILL: i32 = Signal::KILL.as_raw();
    const SIGSEGV: i32 = Signal::SEGV.as_raw();
    let how = match status.signal() {
        // Rust's allocation-failure handler says so on stderr; other aborts (a C library's heap
        // check, an assertion) say why in the stderr tail appended below.
        Some(SIGABRT) if last_stderr.contains("memory allocation of") => format!(
            "aborted (SIGABRT): an allocation over the worker's {} MiB memory limit",
            limit >> 20
        ),
        Some(SIGABRT) => "aborted (SIGABRT)".into(),
        Some(SIGKILL) => {
            "killed (SIGKILL), by the system's out-of-memory killer or an operator".into()
        }
        Some(SIGSEGV) => "crashed (SIGSEGV), possibly a stack overflow in a decoder".into(),
        Some(signal) => format!("killed by signal {signal}"),
        None => format!(
            "exited with status {} without a result",
            status.code().unwrap_or(-1)
        ),
    };
    if last_stderr.is_empty() {
        format!("the decoding process {how}")
    } else {
        format!("the decoding process {how}: {}", last_stderr.trim())
    }
}

/// Prints progress lines on stdout (child side).
struct StdoutProgress;

impl Progress for StdoutProgress {
    fn advance(&self, decoded: u64, total: Option<u64>) {
        let total = total.map_or_else(|| "-".to_string(), |t| t.to_string());
        let mut out = std::io::stdout().lock();
        // A parent that went away makes this fail; the work finishes all the same.
        let _ = writeln!(out, "progress {decoded} {total}");
    }
}

/// Asks the kernel to kill this process when its parent dies (a `kill -9` of `segue ingest`
/// must not leave workers running on); `false` if that fails or the parent is already gone.
fn die_with_parent() -> bool {
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err() {
        return false;
    }
    // A parent that died before that left us to a reaper: compare with the pid it gave us
    // (not with 1, which may be the parent in a container). A value that is not a pid is a
    // mismatch, not a reason to skip the check.
    match std::env::var(PARENT_ENV) {
        Err(_) => true,
        Ok(expected) => {
            let parent = rustix::process::getppid().map(|p| p.as_raw_pid());
            expected
                .parse::<i32>()
                .ok()
                .is_some_and(|p| Some(p) == parent)
        }
    }
}

/// The environment variable that gives a worker its parent's pid.
const PARENT_ENV: &str = "SEGUE_INGEST_PARENT";

/// Limits this process's address space to `bytes` (child side, before any thread starts).
fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let limit = Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    rustix::process::setrlimit(Resource::As, limit).map_err(std::io::Error::from)
}

/// The `ingest-worker` subcommand (child side): reads its settings (`settings`, from
/// [`encode_config`]), limits memory, ingests `file`, prints the result line. Exit status 0
/// whenever a result was printed (success or a clean failure).
pub fn worker_main(file: &Path, settings: &str) -> ExitCode {
    if !die_with_parent() {
        // The parent is already gone: nobody would read the result.
        return ExitCode::FAILURE;
    }
    let result = match run_worker(file, settings) {
        Ok(outcome) => WorkerResult::Ok(outcome),
        Err(e) => WorkerResult::Err(e.report()),
    };
    let line = serde_json::to_string(&result).or_else(|e| {
        serde_json::to_string(&WorkerResult::Err(ErrorReport {
            kind: IngestErrorKind::Internal,
            message: format!("internal error: the result could not be encoded: {e}"),
        }))
    });
    let mut out = std::io::stdout().lock();
    let written = match line {
        Ok(line) => writeln!(out, "result {line}").and_then(|()| out.flush()),
        Err(e) => Err(std::io::Error::other(e)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// The worker's ingest, under its memory limit, with panics caught.
fn run_worker(file: &Path, settings: &str) -> Result<IngestOutcome, IngestError> {
    let config = decode_config(settings)?;
    let memory_bytes = config
        .worker
        .as_ref()
        .map(|w| w.memory_bytes)
        .ok_or_else(|| IngestError::Internal("the worker got no memory limit".into()))?;
    limit_memory(memory_bytes)
        .map_err(|e| IngestError::Internal(format!("cannot limit the worker's memory: {e}")))?;
    let library = Library::new(&config.library, None)?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ingest_file(file, &config, &library, &StdoutProgress)
    }))
    .unwrap_or_else(|panic| {
        Err(IngestError::Internal(format!(
            "panicked while ingesting: {}",
            super::panic_message(panic.as_ref())
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_config_reaches_the_worker() {
        let config = crate::config::tests::unusual_ingest_config();
        let text = encode_config(&config).unwrap();
        assert_eq!(decode_config(&text).unwrap(), config);
    }

    #[test]
    fn deaths_are_explained() {
        let abort = std::process::ExitStatus::from_raw(Signal::ABORT.as_raw());
        let text = describe_death(abort, 64 << 20, "memory allocation of 1 bytes failed");
        assert!(text.contains("64 MiB memory limit"), "{text}");
        assert!(
            text.ends_with("memory allocation of 1 bytes failed"),
            "{text}"
        );
        let exit = std::process::ExitStatus::from_raw(3 << 8);
        assert!(describe_death(exit, 1, "").contains("status 3"));
        let corrupt = describe_death(abort, 64 << 20, "double free or corruption (out)");
        assert!(!corrupt.contains("memory limit"), "{corrupt}");
        assert!(
            corrupt.ends_with("double free or corruption (out)"),
            "{corrupt}"
        );
    }
}
