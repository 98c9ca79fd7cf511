//! Each file is ingested by a worker process (`segue ingest-worker`) under a memory limit: a
//! worker that dies fails its own file only, and `kill -9` of `segue ingest` at any moment
//! leaves a consistent library that a re-run completes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{QuietObserver, TempLibrary, assert_consistent, entries, make_input};
use segue::catalog::Catalog;
use segue::config::{DEFAULT_LADDER, DEFAULT_SEGMENT_SECONDS, IngestConfig, WorkerConfig};
use segue::ingest::batch::ingest_batch;
use segue::ingest::error::IngestErrorKind;
use segue::ingest::pipeline::IngestOutcome;

fn config(lib: &TempLibrary, memory_bytes: Option<u64>) -> IngestConfig {
    let mut config = IngestConfig::new(
        lib.library().into(),
        DEFAULT_LADDER,
        DEFAULT_SEGMENT_SECONDS,
        None,
    )
    .unwrap();
    config.worker = memory_bytes.map(|memory_bytes| WorkerConfig {
        program: PathBuf::from(env!("CARGO_BIN_EXE_segue")),
        memory_bytes,
    });
    config
}

#[test]
fn a_worker_that_runs_out_of_memory_fails_its_file_alone() {
    let lib = TempLibrary::new();
    let input = make_input(
        &lib.inputs(),
        "a.wav",
        44_100,
        1.0,
        2,
        &["-c:a", "pcm_s16le"],
    );
    // Tight address-space limits end a worker in both ways it can fail: a clean error (the
    // encoder or a thread cannot get memory) or an abort (a decoder buffer allocation fails).
    // Where one turns into the other depends on the binary and the allocator, so the limits
    // are swept from 16 MiB up (to 128 at most, until both kinds turned up); each leaves
    // nothing behind.
    let (mut clean, mut aborted) = (Vec::new(), Vec::new());
    for mib in (16..=128).step_by(2) {
        if !clean.is_empty() && !aborted.is_empty() {
            break;
        }
        let reports = ingest_batch(
            std::slice::from_ref(&input),
            &config(&lib, Some(mib << 20)),
            &QuietObserver,
        )
        .unwrap();
        let Err(error) = reports[0].result.as_ref() else {
            continue;
        };
        eprintln!("{mib} MiB: {error}");
        match error.kind() {
            IngestErrorKind::WorkerDied => aborted.push(mib),
            _ => clean.push(mib),
        }
        assert!(entries(&lib.library().join("tracks")).is_empty());
        assert!(entries(&lib.library().join(".staging")).is_empty());
    }
    assert!(
        !clean.is_empty() && !aborted.is_empty(),
        "clean errors at {clean:?} MiB, aborts at {aborted:?} MiB"
    );
    // With room to work, the same file goes in, through the worker.
    let reports = ingest_batch(&[input], &config(&lib, Some(2 << 30)), &QuietObserver).unwrap();
    let id = reports[0].result.as_ref().unwrap().id().to_string();
    assert_eq!(entries(&lib.library().join("tracks")), BTreeSet::from([id]));
}

#[test]
fn workers_write_the_same_bytes_as_an_in_process_ingest() {
    let (a, b) = (TempLibrary::new(), TempLibrary::new());
    let input = make_input(&a.inputs(), "same.flac", 48_000, 1.5, 2, &["-c:a", "flac"]);
    let one = ingest_batch(
        std::slice::from_ref(&input),
        &config(&a, None),
        &QuietObserver,
    )
    .unwrap();
    let two = ingest_batch(&[input], &config(&b, Some(2 << 30)), &QuietObserver).unwrap();
    let id = one[0].result.as_ref().unwrap().id().to_string();
    assert_eq!(two[0].result.as_ref().unwrap().id(), id);
    let (ra, rb) = (a.record(&id), b.record(&id));
    assert_eq!(ra, rb);
    for r in &ra.renditions {
        for name in entries(&a.layout().track_dir(&id).join(&r.dir)) {
            let rel = Path::new(&r.dir).join(&name);
            let bytes =
                |lib: &TempLibrary| std::fs::read(lib.layout().track_dir(&id).join(&rel)).unwrap();
            assert_eq!(bytes(&a), bytes(&b), "{}", rel.display());
        }
    }
}

#[test]
fn settings_without_a_flag_reach_the_worker() {
    let lib = TempLibrary::new();
    let input = make_input(
        &lib.inputs(),
        "first.flac",
        48_000,
        5.0,
        2,
        &["-c:a", "flac"],
    );
    // The first segment: 2 s instead of the default 1 s, which no flag sets.
    let mut config = config(&lib, Some(2 << 30));
    config.first_segment_seconds = 2.0;
    let reports = ingest_batch(std::slice::from_ref(&input), &config, &QuietObserver).unwrap();
    let Ok(IngestOutcome::Ingested(record)) = &reports[0].result else {
        panic!("{:?}", reports[0].result)
    };
    assert_eq!(record.sample_rate, 48_000);
    assert_eq!(record.segment_durations[0], 2 * 48_000 / 2048 * 2048);

    // A decode limit: a 48 kHz source is beyond a 44.1 kHz maximum.
    let other = TempLibrary::new();
    let mut config = self::config(&other, Some(2 << 30));
    config.decode.max_sample_rate = 44_100;
    let reports = ingest_batch(&[input], &config, &QuietObserver).unwrap();
    let error = reports[0].result.as_ref().unwrap_err();
    assert_eq!(error.kind(), IngestErrorKind::BeyondLimits, "{error}");
}

#[test]
fn kill_9_at_any_moment_leaves_a_consistent_library_and_the_rerun_completes() {
    let lib = TempLibrary::new();
    let inputs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let name = format!("k{i}.flac");
            make_input(
                &lib.inputs(),
                &name,
                44_100,
                2.0 + f64::from(i),
                2,
                &["-c:a", "flac"],
            )
        })
        .collect();
    let run = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_segue"));
        cmd.arg("ingest")
            .arg("--library")
            .arg(lib.library())
            .args(["--json", "--jobs", "2"])
            .args(&inputs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    // Time one whole run, then kill runs at twelve points spread over that time, each from an
    // empty library so every kill meets work in progress (decode, encode, staging, commit,
    // indexing). Fixed fractions, so a failure can be reproduced.
    let wipe = || {
        let layout = lib.layout();
        std::fs::remove_dir_all(layout.tracks_dir()).unwrap();
        layout.create().unwrap();
        Catalog::open(&layout).unwrap();
    };
    let started = Instant::now();
    assert!(run().status().unwrap().success());
    let whole = started.elapsed();
    let mut kills = 0;
    for step in 0..12u32 {
        // A run that ends before its kill point (a loaded machine makes runs uneven) is
        // repeated with half the delay, so every step kills a run in progress.
        let mut delay = whole * step / 15;
        for _attempt in 0..4 {
            wipe();
            let mut child = run().spawn().unwrap();
            std::thread::sleep(delay);
            let running = child.try_wait().unwrap().is_none();
            if running {
                child.kill().unwrap(); // SIGKILL
            }
            child.wait().unwrap();
            if running {
                kills += 1;
                break;
            }
            delay /= 2;
        }
        // Workers die with their parent (PR_SET_PDEATHSIG); their staging is swept once the
        // kernel has released their locks.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !entries(&lib.layout().staging_dir()).is_empty() {
            lib.layout().create().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_consistent(&lib);
        let status = run().status().unwrap();
        assert!(
            status.success(),
            "the re-run after kill {step} failed: {status}"
        );
        assert_eq!(assert_consistent(&lib).len(), 3);
    }
    eprintln!(
        "{kills} kills mid-ingest (whole run {whole:?}); consistent and completed after each"
    );
    assert!(kills >= 10, "only {kills} of 12 kills landed mid-run");
    assert_eq!(assert_consistent(&lib).len(), 3);
}

#[test]
fn a_log_asked_for_with_rust_log_includes_the_workers() {
    let run = |filter: Option<&str>| {
        let lib = TempLibrary::new();
        let input = make_input(&lib.inputs(), "logged.wav", 44_100, 1.0, 2, &[]);
        let mut command = Command::new(env!("CARGO_BIN_EXE_segue"));
        command.args(["ingest", "--library"]).arg(lib.library());
        command.arg(&input).env_remove("RUST_LOG");
        if let Some(filter) = filter {
            command.env("RUST_LOG", filter);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The stage timings are logged by the worker process, at DEBUG.
    let logged = run(Some("segue=debug"));
    assert!(logged.contains("stage CPU time"), "{logged}");
    let quiet = run(None);
    assert!(!quiet.contains("stage CPU time"), "{quiet}");
}
