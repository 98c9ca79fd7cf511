//! Storage faults: a disk that fills up during an ingest, and a read-only library.
//!
//! A full disk fails the file being written with an error naming the path and the cause (no
//! panic, no half track, staging swept); the tracks that fit stay complete and listed, the
//! library is still listed and served, and a re-run with room completes. A read-only library
//! refuses an ingest up front, naming itself and why, and changes by not a byte; it is still
//! listed and served, for an origin only reads.
//!
//! The tests mount filesystems (a size-limited tmpfs, read-only bind mounts), which takes root
//! or CAP_SYS_ADMIN: without it they fail saying so, or, with SEGUE_SKIP_PRIVILEGED_TESTS=1,
//! print that they are skipped.

mod common;
#[path = "storage_faults/mounts.rs"]
mod mounts;
#[path = "peers/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{QuietObserver, TempLibrary, assert_consistent, entries, make_input, segue};
use mounts::MountedLibrary;
use segue::config::{DEFAULT_LADDER, DEFAULT_SEGMENT_SECONDS, IngestConfig};
use segue::ingest::batch::{BatchError, ingest_batch};
use segue::store::StoreError;
use segue::store::layout;
use support::{Server, http_get};

/// Ingests `input` into `lib`, which must work; returns the track id.
fn ingest_ok(lib: &TempLibrary, input: &Path) -> String {
    let (code, lines, stderr) = ingest(lib, &[input]);
    assert_eq!(code, 0, "{lines:?} {stderr}");
    lines[0]["id"].as_str().unwrap().to_string()
}

/// Runs `segue ingest --json` into `lib`; returns the exit code, the JSON lines and stderr.
fn ingest(lib: &TempLibrary, inputs: &[&Path]) -> (i32, Vec<serde_json::Value>, String) {
    let mut args = vec!["ingest".into(), "--json".into(), "--library".into()];
    args.push(lib.library().to_string_lossy().into_owned());
    args.extend(inputs.iter().map(|p| p.to_string_lossy().into_owned()));
    let (code, stdout, stderr) = segue(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (code, lines, stderr)
}

/// A one-second and an eight-second FLAC, in their own temp dir.
fn inputs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let flac = ["-c:a", "flac"];
    let small = make_input(dir.path(), "small.flac", 44_100, 1.0, 2, &flac);
    let big = make_input(dir.path(), "big.flac", 44_100, 8.0, 2, &flac);
    (dir, small, big)
}

/// The `error: …` line `segue` printed on stderr before exiting 2.
fn error_line(stderr: &str) -> &str {
    let line = stderr.lines().find(|l| l.starts_with("error"));
    line.unwrap_or_else(|| panic!("no error line: {stderr}"))
}

/// Asserts that `message` is one clear line naming `path` (or a path inside it) and, in any
/// case, `cause`; never a panic or an internal error.
fn assert_clear(message: &str, path: &Path, cause: &str) {
    let lower = message.to_lowercase();
    assert!(lower.contains(cause), "does not say {cause:?}: {message}");
    assert!(
        message.contains(&*path.to_string_lossy()),
        "does not name {}: {message}",
        path.display()
    );
    assert!(
        !lower.contains("panic") && !lower.contains("internal error"),
        "{message}"
    );
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
}

/// The ENOSPC text, as the OS words it (SQLite's own messages get it appended).
const NO_SPACE: &str = "no space left on device";

/// The ids the catalog lists as it is on disk (not reconciled, as opening a `Catalog` would).
fn indexed_ids(lib: &TempLibrary) -> BTreeSet<String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(lib.layout().catalog_path(), flags).unwrap();
    let mut ids = conn.prepare("SELECT id FROM tracks").unwrap();
    let ids = ids.query_map([], |r| r.get(0)).unwrap();
    ids.collect::<Result<_, _>>().unwrap()
}

/// The ids `segue list --json` prints.
fn listed_ids(lib: &TempLibrary) -> BTreeSet<String> {
    let (code, stdout, stderr) = segue(&[
        "list",
        "--json",
        "--library",
        &lib.library().to_string_lossy(),
    ]);
    assert_eq!(code, 0, "segue list: {stderr}");
    let tracks: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    tracks
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts that `server` lists exactly `ids` and serves every file of every one of them
/// (manifests, playlists, init and media segments) byte for byte as they are on disk.
fn assert_serves(server: &Server, lib: &TempLibrary, ids: &BTreeSet<String>) {
    let api = http_get(&server.url("/api/tracks"), &[]);
    assert_eq!(api.status, 200, "{}", api.text());
    let listed: BTreeSet<String> = api.json()["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&listed, ids, "/api/tracks");
    for id in ids {
        let record = lib.record(id);
        let mut files = vec![record.hls_master.clone(), record.dash_mpd.clone()];
        for r in &record.renditions {
            files.push(format!("{}/{}", r.dir, r.playlist));
            files.push(format!("{}/{}", r.dir, r.init));
            let segments = (0..r.segment_sizes.len()).map(layout::segment_name);
            files.extend(segments.map(|s| format!("{}/{s}", r.dir)));
        }
        for file in files {
            let resp = http_get(&server.url(&format!("/media/{id}/{file}")), &[]);
            assert_eq!(resp.status, 200, "{id}/{file}: {}", resp.text());
            let disk = std::fs::read(lib.layout().track_dir(id).join(&file)).unwrap();
            assert!(
                resp.body == disk,
                "{id}/{file}: served bytes differ from the file"
            );
        }
    }
}

/// Every path under `dir` with its kind, size, modification time and content hash.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut all = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let modified = meta.modified().unwrap();
        let content = if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            String::from("dir")
        } else {
            blake3::hash(&std::fs::read(&path).unwrap())
                .to_hex()
                .to_string()
        };
        let entry = format!("{} bytes, {modified:?}, {content}", meta.len());
        all.insert(path.strip_prefix(dir).unwrap().to_path_buf(), entry);
    }
    all
}

#[test]
fn a_disk_that_fills_mid_batch_fails_the_file_that_does_not_fit_and_the_rerun_completes() {
    let test =
        "a_disk_that_fills_mid_batch_fails_the_file_that_does_not_fit_and_the_rerun_completes";
    let Some(disk) = MountedLibrary::on_tmpfs(test) else {
        return;
    };
    let lib = &disk.lib;
    let layout = lib.layout();
    let (_inputs, small, big) = inputs();
    // Room for the one-second track and the catalog's WAL files (about 60 KiB), far from
    // enough for the eight-second one.
    let (taken, small_id) = disk.space_taken(&small);
    disk.fill_leaving(taken + (96 << 10));
    let (code, lines, stderr) = ingest(lib, &[&small, &big]);
    assert_eq!(
        code, 1,
        "a failed file makes the exit status 1: {lines:?} {stderr}"
    );
    assert_eq!(lines[0]["status"], "ok", "{}", lines[0]);
    assert_eq!(lines[1]["status"], "error", "{}", lines[1]);
    let reason = lines[1]["error"].as_str().unwrap();
    eprintln!("the file that did not fit: {reason}");
    assert_clear(reason, &lib.library(), NO_SPACE);

    // The track that fit is whole and listed, nothing of the other is anywhere, staging is
    // swept: while the disk is still full, and with not a byte left.
    assert_eq!(
        entries(&layout.tracks_dir()),
        BTreeSet::from([small_id.clone()])
    );
    assert!(
        entries(&layout.staging_dir()).is_empty(),
        "staging left behind"
    );
    assert_eq!(listed_ids(lib), BTreeSet::from([small_id.clone()]));
    disk.unfill();
    disk.fill_leaving(0);
    assert_eq!(listed_ids(lib), BTreeSet::from([small_id.clone()]));
    let server = Server::start(&lib.library(), &[]);
    assert_serves(&server, lib, &BTreeSet::from([small_id.clone()]));
    drop(server);
    // With no room at all the ingest stops before any work, saying why.
    let (code, lines, stderr) = ingest(lib, &[&big]);
    assert_eq!(code, 2, "{lines:?} {stderr}");
    assert_clear(error_line(&stderr), &lib.library(), NO_SPACE);

    // With room again, the same batch completes and the library is consistent.
    disk.unfill();
    assert_eq!(indexed_ids(lib), BTreeSet::from([small_id.clone()]));
    let (code, lines, stderr) = ingest(lib, &[&small, &big]);
    assert_eq!(code, 0, "{lines:?} {stderr}");
    assert_eq!(lines[0]["existing"], true);
    let big_id = lines[1]["id"].as_str().unwrap().to_string();
    assert_eq!(assert_consistent(lib), BTreeSet::from([small_id, big_id]));
}

/// Where an ingest of one file ran out of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Before any work: the catalog could not even be opened (exit status 2).
    RefusedUpFront,
    /// While staging the track: nothing of it is visible.
    RefusedWhileStaging,
    /// The track is complete in the library but the catalog could not index it.
    WrittenNotIndexed,
    /// It fit.
    Ingested,
}

#[test]
fn at_every_free_space_around_a_track_it_ends_whole_or_cleanly_refused() {
    let test = "at_every_free_space_around_a_track_it_ends_whole_or_cleanly_refused";
    let Some(disk) = MountedLibrary::on_tmpfs(test) else {
        return;
    };
    let lib = &disk.lib;
    let layout = lib.layout();
    let (_inputs, small, _) = inputs();
    let (taken, id) = disk.space_taken(&small);
    // From a full disk, then 4 KiB steps from well inside the track's files to past the
    // catalog's WAL files: the space runs out in every stage of the write.
    let around = (taken - (32 << 10)..=taken + (96 << 10)).step_by(4 << 10);
    let budgets: Vec<u64> = [0, 16 << 10].into_iter().chain(around).collect();
    let mut seen = BTreeMap::<Outcome, Vec<u64>>::new();
    for &budget in &budgets {
        disk.reset();
        disk.fill_leaving(budget);
        let (code, lines, stderr) = ingest(lib, &[&small]);
        let context = format!(
            "{} KiB free: exit {code}, {lines:?}, {stderr}",
            budget >> 10
        );
        let outcome = match code {
            0 => Outcome::Ingested,
            1 => {
                let reason = lines[0]["error"].as_str().unwrap();
                assert_clear(reason, &lib.library(), NO_SPACE);
                if reason.contains("not indexed") {
                    Outcome::WrittenNotIndexed
                } else {
                    Outcome::RefusedWhileStaging
                }
            }
            2 => {
                assert_clear(error_line(&stderr), &lib.library(), NO_SPACE);
                Outcome::RefusedUpFront
            }
            _ => panic!("{context}"),
        };
        // What is visible, while the disk is still full: a whole track or nothing.
        let whole = matches!(outcome, Outcome::Ingested | Outcome::WrittenNotIndexed);
        let expected = if whole {
            BTreeSet::from([id.clone()])
        } else {
            BTreeSet::new()
        };
        assert_eq!(entries(&layout.tracks_dir()), expected, "{context}");
        assert!(
            entries(&layout.staging_dir()).is_empty(),
            "staging left: {context}"
        );
        disk.unfill();
        // The catalog says what the ingest said: indexed only when it reported success.
        let indexed = if outcome == Outcome::Ingested {
            expected
        } else {
            BTreeSet::new()
        };
        assert_eq!(indexed_ids(lib), indexed, "{context}");
        // Every file complete, and a re-run with room completes.
        if whole {
            assert_consistent(lib);
        }
        let (code, lines, stderr) = ingest(lib, &[&small]);
        assert_eq!(code, 0, "the re-run after {context}: {lines:?} {stderr}");
        assert_eq!(
            assert_consistent(lib),
            BTreeSet::from([id.clone()]),
            "{context}"
        );
        seen.entry(outcome).or_default().push(budget >> 10);
    }
    eprintln!(
        "{} KiB taken by the track; free KiB by outcome: {seen:?}",
        taken >> 10
    );
    for outcome in [
        Outcome::RefusedUpFront,
        Outcome::RefusedWhileStaging,
        Outcome::WrittenNotIndexed,
        Outcome::Ingested,
    ] {
        assert!(seen.contains_key(&outcome), "never {outcome:?}: {seen:?}");
    }
}

#[test]
fn a_read_only_library_refuses_an_ingest_up_front_and_changes_nothing() {
    let test = "a_read_only_library_refuses_an_ingest_up_front_and_changes_nothing";
    let Some(bound) = MountedLibrary::bound(test) else {
        return;
    };
    let (mount, lib, library) = (&bound.mount, &bound.lib, bound.lib.library());
    let (_inputs, small, big) = inputs();
    let id = ingest_ok(lib, &small);
    let before = snapshot(&library);
    mount.read_only(true);

    let path = library.to_string_lossy();
    let big_arg = big.to_string_lossy();
    for args in [
        vec!["ingest", "--json", "--library", &path, &big_arg],
        vec!["ingest", "--library", &path, &big_arg],
        vec!["reindex", "--library", &path],
    ] {
        let (code, stdout, stderr) = segue(&args);
        assert_eq!(code, 2, "{args:?}: {stdout} {stderr}");
        assert!(stdout.is_empty(), "{args:?}: no file was tried: {stdout}");
        assert_clear(error_line(&stderr), &library, "read-only file system");
    }
    // Through the library API, the same refusal is typed.
    let config = IngestConfig::new(
        library.clone().into(),
        DEFAULT_LADDER,
        DEFAULT_SEGMENT_SECONDS,
        None,
    );
    let error = ingest_batch(&[big], &config.unwrap(), &QuietObserver).unwrap_err();
    assert!(
        matches!(
            &error,
            BatchError::Library {
                source: StoreError::NotWritable { .. },
                ..
            }
        ),
        "{error:?}"
    );
    eprintln!("refused: {error}");

    assert_eq!(listed_ids(lib), BTreeSet::from([id]));
    assert_eq!(snapshot(&library), before, "the read-only library changed");
}

#[test]
fn a_read_only_library_is_listed_and_served() {
    let test = "a_read_only_library_is_listed_and_served";
    let Some(bound) = MountedLibrary::bound(test) else {
        return;
    };
    let (mount, lib, library) = (&bound.mount, &bound.lib, bound.lib.library());
    let (_inputs, small, big) = inputs();
    let catalog = lib.layout().catalog_path();
    let first = ingest_ok(lib, &small);
    let catalog_of_one = std::fs::read(&catalog).unwrap();
    let ids = BTreeSet::from([first, ingest_ok(lib, &big)]);

    // The catalog as the ingest left it (WAL mode, no -shm file), on a read-only mount.
    // Then a stale catalog that lists one track of two, then none at all: the track
    // directories are the truth, and are served.
    for state in ["current", "stale", "missing"] {
        mount.read_only(false);
        match state {
            "stale" => std::fs::write(&catalog, &catalog_of_one).unwrap(),
            "missing" => std::fs::remove_file(&catalog).unwrap(),
            _ => {}
        }
        let before = snapshot(&library);
        mount.read_only(true);
        assert_eq!(listed_ids(lib), ids, "segue list, {state} catalog");
        let server = Server::start(&library, &[]);
        assert_serves(&server, lib, &ids);
        drop(server);
        assert_eq!(
            snapshot(&library),
            before,
            "{state} catalog: the library changed"
        );
    }
}
