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
//! The protocol on the child's stdout: `progress DECODED TOTAL|-` lines, then one
//! `result JSON` line with a [`WorkerResult`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::pipeline::{IngestError, IngestOutcome, Progress, ingest_file};
use crate::config::IngestConfig;
use crate::store::LibraryLayout;

/// How to run workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The `segue` executable (its `ingest-worker` subcommand is run).
    pub program: PathBuf,
    /// Address-space limit of a worker, in bytes.
    pub memory_bytes: u64,
}

/// Default address-space limit of a worker: far above what a streaming ingest uses (about
/// 15 MiB resident, a few hundred MiB of address space with thread stacks and malloc arenas),
/// far below what would hurt the machine.
pub const DEFAULT_WORKER_MEMORY: u64 = 2 << 30;

/// The last line a worker prints.
#[derive(Debug, Serialize, Deserialize)]
pub enum WorkerResult {
    /// The file was ingested (or was already there).
    Ok(IngestOutcome),
    /// It failed, with this message.
    Err(String),
}

/// Most stderr kept from a worker, for the error message of a crash.
const STDERR_TAIL: usize = 2048;

/// Runs `ingest_file` for `file` in a worker process (parent side).
pub fn ingest_in_worker(
    file: &Path,
    config: &IngestConfig,
    worker: &WorkerConfig,
    layout: &LibraryLayout,
    progress: &dyn Progress,
) -> Result<IngestOutcome, IngestError> {
    let mut command = Command::new(&worker.program);
    command
        .arg("ingest-worker")
        .arg("--library")
        .arg(&config.library)
        .args(["--ladder", &config.ladder.spec()])
        .args(["--segment-seconds", &config.segment_seconds.to_string()])
        .args(["--memory-bytes", &worker.memory_bytes.to_string()])
        .args([
            "--max-duration-seconds",
            &config.decode.max_duration_seconds.to_string(),
        ]);
    if !config.afterburner {
        command.arg("--no-afterburner");
    }
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
                    result = serde_json::from_str::<WorkerResult>(json).ok();
                }
            }
        }
    });
    let status = child
        .wait()
        .map_err(|e| IngestError::Internal(format!("ingest worker lost: {e}")))?;
    match result {
        Some(WorkerResult::Ok(outcome)) if status.success() => Ok(outcome),
        Some(WorkerResult::Err(message)) => Err(IngestError::Worker(message)),
        _ => {
            // Died without a verdict: whatever it staged is swept (its lock is free now).
            layout.sweep_staging();
            let tail = tail.into_inner().unwrap_or_else(|p| p.into_inner());
            let stderr = String::from_utf8_lossy(&tail);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(IngestError::Worker(describe_death(
                status,
                worker.memory_bytes,
                last,
            )))
        }
    }
}

/// A message for a worker that ended without a result.
fn describe_death(status: std::process::ExitStatus, limit: u64, last_stderr: &str) -> String {
    let how = match status.signal() {
        Some(libc::SIGABRT) => format!(
            "aborted (SIGABRT), most likely an allocation over the worker's {} MiB memory limit",
            limit >> 20
        ),
        Some(libc::SIGKILL) => {
            "killed (SIGKILL), by the system's out-of-memory killer or an operator".into()
        }
        Some(libc::SIGSEGV) => "crashed (SIGSEGV), possibly a stack overflow in a decoder".into(),
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
/// must not leave workers running on); `false` if the parent is already gone.
fn die_with_parent() -> bool {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and changes only this process's state.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // SAFETY: getppid cannot fail. A parent that died before the prctl left us to a reaper:
    // compare with the pid it gave us (not with 1, which may be the parent in a container).
    let parent = unsafe { libc::getppid() };
    let expected = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    rc == 0 && expected.is_none_or(|p| p == parent)
}

/// The environment variable that gives a worker its parent's pid.
const PARENT_ENV: &str = "SEGUE_INGEST_PARENT";

/// Limits this process's address space to `bytes` (child side, before any thread starts).
fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The `ingest-worker` subcommand (child side): limits memory, ingests `file`, prints the
/// result line. Exit status 0 whenever a result was printed (success or a clean failure).
pub fn worker_main(file: &Path, config: &IngestConfig, memory_bytes: u64) -> ExitCode {
    if !die_with_parent() {
        // The parent is already gone: nobody would read the result.
        return ExitCode::FAILURE;
    }
    let result = match limit_memory(memory_bytes) {
        Err(e) => WorkerResult::Err(format!("cannot limit the worker's memory: {e}")),
        Ok(()) => {
            let layout = LibraryLayout::new(&config.library);
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ingest_file(file, config, &layout, &StdoutProgress)
            }));
            match run {
                Ok(Ok(outcome)) => WorkerResult::Ok(outcome),
                Ok(Err(e)) => WorkerResult::Err(e.to_string()),
                Err(panic) => WorkerResult::Err(format!(
                    "internal error: panicked while ingesting: {}",
                    super::panic_message(panic.as_ref())
                )),
            }
        }
    };
    let line = serde_json::to_string(&result)
        .unwrap_or_else(|e| format!(r#"{{"Err":"the result could not be encoded: {e}"}}"#));
    let mut out = std::io::stdout().lock();
    if writeln!(out, "result {line}")
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deaths_are_explained() {
        let abort = std::process::ExitStatus::from_raw(libc::SIGABRT);
        let text = describe_death(abort, 64 << 20, "memory allocation of 1 bytes failed");
        assert!(text.contains("64 MiB memory limit"), "{text}");
        assert!(
            text.ends_with("memory allocation of 1 bytes failed"),
            "{text}"
        );
        let exit = std::process::ExitStatus::from_raw(3 << 8);
        assert!(describe_death(exit, 1, "").contains("status 3"));
    }
}
