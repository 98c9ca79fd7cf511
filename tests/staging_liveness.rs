//! Staging liveness: a staging directory is live while the process writing it holds its lock,
//! and dead the moment that process ends, whatever its pid becomes.
//!
//! With real processes: an ingest killed mid-way leaves a staging directory that the next
//! ingest sweeps, even when the directory names the pid of a running, unrelated process (which
//! is what a reused pid looks like); a live ingest's staging survives concurrent ingests and
//! sweeps and completes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempLibrary, assert_consistent, entries, ingest_json, make_input, segue};
use segue::store::LibraryLayout;

/// Starts `segue ingest` of `input` into the library of `lib`, its output discarded.
fn start_ingest(lib: &TempLibrary, input: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_segue"))
        .arg("ingest")
        .arg("--library")
        .arg(lib.library())
        .arg(input)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `child` has a staging directory and returns its path (panics after 60 s, or
/// if the ingest ends first).
fn staging_of(layout: &LibraryLayout, child: &mut Child) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(name) = entries(&layout.staging_dir()).into_iter().next() {
            return layout.staging_dir().join(name);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the ingest ended before it staged anything"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the ingest staged nothing in 60 s");
}

/// The pid in a staging directory name (`<id>.<pid>.<n>`): the process that wrote it.
fn writer_pid(staging: &Path) -> u32 {
    let name = staging.file_name().unwrap().to_str().unwrap();
    name.split('.').nth(1).unwrap().parse().unwrap()
}

/// Whether `pid` runs (a zombie has ended: its descriptors, and so its locks, are released).
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// A long input: the ingest is still staging when it is killed or swept.
fn long_input(lib: &TempLibrary) -> PathBuf {
    make_input(
        &lib.inputs(),
        "long.flac",
        44_100,
        40.0,
        2,
        &["-c:a", "flac"],
    )
}

fn short_input(lib: &TempLibrary) -> PathBuf {
    make_input(
        &lib.inputs(),
        "short.wav",
        48_000,
        1.0,
        2,
        &["-c:a", "pcm_s16le"],
    )
}

/// An ingest of a long input under way in `lib`: a short input to ingest besides, the
/// ingest's process and its staging directory.
fn long_ingest_under_way(lib: &TempLibrary) -> (PathBuf, Child, PathBuf) {
    let (long, short) = (long_input(lib), short_input(lib));
    let mut ingest = start_ingest(lib, &long);
    let staging = staging_of(&lib.layout(), &mut ingest);
    (short, ingest, staging)
}

#[test]
fn killed_ingest_staging_is_swept_even_when_its_pid_is_reused() {
    let lib = TempLibrary::new();
    let layout = lib.layout();
    let (short, mut ingest, staging) = long_ingest_under_way(&lib);
    let writer = writer_pid(&staging);
    std::thread::sleep(Duration::from_millis(300));
    // SIGKILL: the worker that stages dies with its parent (PR_SET_PDEATHSIG), unswept.
    ingest.kill().unwrap();
    ingest.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(writer) {
        assert!(
            Instant::now() < deadline,
            "the worker {writer} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its other threads may still be ending, the lock still held: the next ingest sweeps when
    // it opens the library and again when it is done.
    assert!(
        staging.is_dir(),
        "the killed ingest left no staging to sweep"
    );

    // An unrelated process now runs; give the dead staging its pid, as if the writer's pid had
    // been reused (waiting for the pids to wrap around would take minutes). A pid check would
    // find it running and keep the directory forever.
    let mut unrelated = Command::new("sleep").arg("60").spawn().unwrap();
    let name = staging.file_name().unwrap().to_str().unwrap();
    let reused = name.replacen(&format!(".{writer}."), &format!(".{}.", unrelated.id()), 1);
    let reused = layout.staging_dir().join(reused);
    std::fs::rename(&staging, &reused).unwrap();

    // The next ingest sweeps on open; nothing of the killed one is left or listed.
    let (code, lines) = ingest_json(&lib.library(), &[], &[&short]);
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
    assert_eq!(code, 0, "{lines:?}");
    assert!(!reused.exists(), "dead staging kept: {}", reused.display());
    let short_id = lines[0]["id"].as_str().unwrap().to_string();
    let ids = assert_consistent(&lib);
    assert_eq!(ids.iter().collect::<Vec<_>>(), [&short_id]);
    let (code, stdout, _) = segue(&[
        "list",
        "--json",
        "--library",
        &lib.library().to_string_lossy(),
    ]);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [short_id.as_str()]);
}

#[test]
fn live_ingest_staging_is_never_swept_by_a_concurrent_one() {
    let lib = TempLibrary::new();
    let layout = lib.layout();
    let (short, mut ingest, staging) = long_ingest_under_way(&lib);

    // A concurrent ingest (it sweeps when it opens the library), then sweeps from this
    // process, as often as they can run, for as long as the long ingest stages.
    let (code, lines) = ingest_json(&lib.library(), &[], &[&short]);
    assert_eq!(code, 0, "{lines:?}");
    let mut live_sweeps = 0;
    while ingest.try_wait().unwrap().is_none() {
        layout.sweep_staging();
        if staging.is_dir() {
            live_sweeps += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(live_sweeps > 0, "the long ingest ended before any sweep");

    // Had a sweep taken its staging, the long ingest would have failed writing to it.
    assert!(ingest.wait().unwrap().success(), "the live ingest failed");
    assert!(!staging.exists());
    assert_eq!(assert_consistent(&lib).len(), 2);
}
