//! A soak on loopback (issue 5): the built `segue serve` binary, for `SEGUE_SOAK_SECS` seconds
//! (default 600), under keep-alive segment load, WebSocket devices, clients that hang up
//! mid-body or mid-head, and `segue ingest` runs adding tracks to the library it serves.
//!
//! Afterwards: no 5xx and no unexpected status or body, no WARN or ERROR line in the server's
//! log, and, at the quiet points (every client gone but one idle WebSocket watcher), the open
//! file descriptors back at their baseline (those cached segments keep for zero-copy sends
//! aside, which are checked against the cache) and the anonymous resident memory (RssAnon; VmRSS
//! also counts the binary's code, which pages in as code paths first run) within a small bound.
//!
//! Timeline: quiet point 0 (nothing served yet, for the record); warm-up, the first fifth of the
//! run, in which the hot-file cache fills and the allocator's arenas and tokio's threads reach
//! their working size; quiet point 1, the baseline; the steady state; quiet point 2 at the end.
//! At a quiet point every load task has closed its sockets ([`shared::Gate`]) and the server's
//! descriptor count has settled before it is read.

mod common;
#[path = "server_http/support.rs"]
#[allow(dead_code)] // shared with tests/server_http.rs, which uses the rest
mod support;

#[path = "soak/http.rs"]
mod http;
#[path = "soak/process.rs"]
mod process;
#[path = "soak/requests.rs"]
mod requests;
#[path = "soak/shared.rs"]
mod shared;
#[path = "soak/verdict.rs"]
mod verdict;
#[path = "soak/ws.rs"]
mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ServeCommand, TempLibrary, ingest_json, make_input, make_wav};
use process::{Probe, scan_log};
use shared::{Shared, Tally, lock};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use verdict::{Figures, Timed, quiet_point};

/// Keep-alive HTTP load clients.
const HTTP_CLIENTS: u64 = 32;
/// Clients that hang up mid-body, mid-head or before reading.
const HANG_UP_CLIENTS: u64 = 4;
/// WebSocket devices, spread over [`SESSIONS`] sessions.
const WS_DEVICES: u64 = 8;
/// Sessions the devices share.
const SESSIONS: u64 = 3;
/// Pause between two ingests.
const INGEST_EVERY: Duration = Duration::from_secs(3);
/// How often /proc is read for the peaks.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// The hot-file cache, `--cache-mib`: smaller than the library (about 3.5 MB at the start,
/// 150 KB more per ingest), so it is full and evicting well before the end of the warm-up.
const CACHE_MIB: u64 = 4;
/// Longest wait for a task to notice the end, or for the watcher to hear of a new track.
const TASK_LIMIT: Duration = Duration::from_secs(60);

/// The run's length: `SEGUE_SOAK_SECS` (default 600, at least 10).
fn soak_duration() -> Duration {
    let secs = std::env::var("SEGUE_SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("SEGUE_SOAK_SECS: a number of seconds")
        })
        .unwrap_or(600);
    Duration::from_secs(secs.max(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_mixed_load_gets_no_5xx_no_warning_and_leaves_fds_and_memory_flat() {
    let soak = soak_duration();
    let lib = TempLibrary::new();
    let (library, inputs) = (lib.library(), lib.inputs());
    {
        let (library, inputs) = (library.clone(), inputs.clone());
        tokio::task::spawn_blocking(move || initial_library(&library, &inputs))
            .await
            .unwrap();
    }
    let cache_mib = CACHE_MIB.to_string();
    let log = lib.dir.path().join("serve.log");
    let mut server = serve_command(&library)
        .args(&["--cache-mib", &cache_mib])
        .log_to(&log)
        .start();
    let (addr, probe) = (server.addr, Probe(server.pid()));
    let shared = Shared::new(http::list_tracks(addr).await.unwrap());

    let (connected, watching) = oneshot::channel();
    let (stop_watcher, watcher_stop) = oneshot::channel();
    let watcher = tokio::spawn(ws::watcher(
        Arc::clone(&shared),
        addr,
        connected,
        watcher_stop,
    ));
    tokio::time::timeout(TASK_LIMIT, watching)
        .await
        .expect("the watcher is welcomed")
        .expect("the watcher is welcomed");
    let started = Instant::now();
    let (stop_sampler, sampler) = sampler(probe, started);
    let media = std::fs::canonicalize(library.join("tracks")).unwrap();
    let quiet0 = quiet_point(probe, addr, &media, started, None).await;

    let mut tasks: Vec<(String, JoinHandle<()>)> = Vec::new();
    for i in 0..HTTP_CLIENTS {
        let task = http::load_client(Arc::clone(&shared), addr, i);
        tasks.push((format!("load client {i}"), tokio::spawn(task)));
    }
    for i in 0..HANG_UP_CLIENTS {
        let task = http::hang_up_client(Arc::clone(&shared), addr, 100 + i);
        tasks.push((format!("hang-up client {i}"), tokio::spawn(task)));
    }
    for i in 0..WS_DEVICES {
        let session = format!("soak-{}", i % SESSIONS);
        let task = ws::device(Arc::clone(&shared), addr, 200 + i, session);
        tasks.push((format!("device {i}"), tokio::spawn(task)));
    }
    let task = ingest_loop(Arc::clone(&shared), addr, library, inputs);
    tasks.push(("ingest".into(), tokio::spawn(task)));

    tokio::time::sleep(soak / 5).await;
    let quiet1 = {
        let _all_out = shared.gate.pause().await;
        quiet_point(probe, addr, &media, started, None).await
    };
    tokio::time::sleep(soak.saturating_sub(started.elapsed())).await;
    shared.gate.stop();
    for (name, task) in tasks {
        match tokio::time::timeout(TASK_LIMIT, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => shared.tally.fail(format!("{name} panicked: {e}")),
            Err(_) => shared.tally.fail(format!("{name} did not stop in 60 s")),
        }
    }
    let baseline = quiet1.fds.other_count();
    let quiet2 = quiet_point(probe, addr, &media, started, Some(baseline)).await;
    let _ = stop_watcher.send(());
    match tokio::time::timeout(TASK_LIMIT, watcher).await {
        Ok(Ok(Ok(()))) => {}
        other => shared.tally.fail(format!("the watcher: {other:?}")),
    }
    let _ = stop_sampler.send(());
    let samples = sampler.await.unwrap();
    let exit = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();

    let figures = Figures {
        soak,
        tally: &shared.tally,
        log: scan_log(&log),
        quiet: [quiet0, quiet1, quiet2],
        samples,
        exit,
    };
    figures.print();
    let problems = figures.problems(&media);
    if !problems.is_empty() {
        // Keep the library and the whole log to dig in.
        let kept = lib.dir.keep();
        panic!(
            "{}\nthe server log: {}",
            problems.join("\n"),
            kept.join("serve.log").display()
        );
    }
}

/// `segue serve` on `library`: `SEGUE_SOAK_BIN` if set (another build, a release one or a
/// branch, soaked against the same checks), else the built one.
fn serve_command(library: &Path) -> ServeCommand {
    let command = ServeCommand::new(library);
    match std::env::var_os("SEGUE_SOAK_BIN") {
        Some(program) => command.program(PathBuf::from(program)),
        None => command,
    }
}

/// Six tracks of 8 to 10.5 s (FLAC, 48 and 44.1 kHz), ingested with the CLI.
fn initial_library(library: &Path, inputs: &Path) {
    let files: Vec<PathBuf> = (0..6u32)
        .map(|i| {
            let rate = if i % 2 == 0 { 48_000 } else { 44_100 };
            let seconds = 8.0 + f64::from(i) / 2.0;
            make_input(
                inputs,
                &format!("track-{i}.flac"),
                rate,
                seconds,
                2,
                &["-c:a", "flac"],
            )
        })
        .collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, lines) = ingest_json(library, &["--jobs", "2"], &files);
    assert_eq!(code, 0, "initial ingest: {lines:?}");
}

/// Ingests a new short file every [`INGEST_EVERY`] until the end; each must appear in
/// `/api/tracks` at once and be announced to the watcher.
async fn ingest_loop(shared: Arc<Shared>, addr: SocketAddr, library: PathBuf, inputs: PathBuf) {
    let mut n = 0u32;
    while let Some(turn) = shared.gate.enter().await {
        n += 1;
        if let Err(e) = ingest_one(&shared, addr, &library, &inputs, n).await {
            shared.tally.fail(format!("ingest {n}: {e}"));
        }
        drop(turn);
        shared.gate.idle(INGEST_EVERY).await;
    }
}

async fn ingest_one(
    shared: &Shared,
    addr: SocketAddr,
    library: &Path,
    inputs: &Path,
    n: u32,
) -> Result<(), String> {
    let (library, inputs) = (library.to_path_buf(), inputs.to_path_buf());
    let (code, lines) = tokio::task::spawn_blocking(move || {
        // The duration makes every file's bytes, and so its track id, new.
        let seconds = 2.0 + f64::from(n) / 100.0;
        let name = format!("late-{n}.wav");
        let input = make_wav(&inputs, &name, 44_100, seconds);
        let report = ingest_json(&library, &[], &[&input]);
        let _ = std::fs::remove_file(&input);
        report
    })
    .await
    .map_err(|e| format!("panicked: {e}"))?;
    let id = match lines.as_slice() {
        [line] if code == 0 && line["status"] == "ok" && line["existing"] == false => {
            line["id"].as_str().unwrap_or_default().to_string()
        }
        _ => return Err(format!("exit {code}: {lines:?}")),
    };
    Tally::bump(&shared.tally.ingests);
    let tracks = http::list_tracks(addr).await?;
    if !tracks.iter().any(|t| t.id == id) {
        return Err(format!("{id} is not in /api/tracks after its ingest"));
    }
    shared.tracks.replace(tracks);
    let deadline = Instant::now() + TASK_LIMIT;
    while !lock(&shared.announced).contains(&id) {
        if Instant::now() > deadline {
            return Err(format!("no library event announced {id} in 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Reads /proc every [`SAMPLE_EVERY`] until told to stop; returns the samples with the time
/// since `started`.
fn sampler(probe: Probe, started: Instant) -> (oneshot::Sender<()>, JoinHandle<Vec<Timed>>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => samples.push((started.elapsed(), probe.sample())),
                _ = &mut stopped => return samples,
            }
        }
    });
    (stop, task)
}
