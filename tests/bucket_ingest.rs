//! Ingest into a bucket, end to end with the real `segue` binary and an S3 server on loopback
//! (moto, [`common::s3`]): a bucket track is byte for byte the directory track, a re-ingest
//! of the same bytes writes nothing, concurrent ingests of one file make one track, a killed
//! ingest leaves nothing visible and `segue gc` removes exactly its leftovers ([`kills`]), and
//! the bucket's faults fail cleanly within bounds ([`faults`]).

mod common;
#[path = "bucket_ingest/faults.rs"]
mod faults;
#[path = "bucket_ingest/kills.rs"]
mod kills;
#[path = "bucket_ingest/support.rs"]
mod support;

use std::collections::BTreeSet;

use common::make_wav;
use segue::catalog::TrackRecord;
use support::{Lab, RUN_LIMIT, local_objects, puts};

#[test]
fn a_bucket_track_is_the_directory_track_byte_for_byte() {
    let lab = Lab::start();
    let input = make_wav(&lab.inputs(), "song.wav", 44_100, 5.0);
    let line = lab.ingest_ok("lib", &input);
    let id = line["id"].as_str().unwrap().to_string();
    let local = lab.tmp.path().join("local");
    let (code, lines) = common::ingest_json(&local, &[], &[&input]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["id"], line["id"]);

    let in_bucket = lab.objects("lib");
    let in_dir = local_objects(&local);
    let bucket_keys: Vec<_> = in_bucket.keys().collect();
    let dir_keys: Vec<_> = in_dir.keys().collect();
    assert_eq!(bucket_keys, dir_keys, "the keys differ");
    let differing: Vec<_> = in_bucket
        .iter()
        .filter(|(key, bytes)| in_dir[*key] != **bytes)
        .map(|(key, _)| key)
        .collect();
    assert!(differing.is_empty(), "bytes differ in {differing:?}");
    assert!(in_bucket.contains_key(&format!("tracks/{id}/track.json")));
    assert_eq!(lab.list_ids("lib"), vec![id]);
}

#[test]
fn a_reingest_of_the_same_bytes_writes_nothing() {
    let lab = Lab::start();
    let input = make_wav(&lab.inputs(), "song.wav", 44_100, 3.0);
    let first = lab.ingest_ok("lib", &input);
    assert_eq!(first["existing"], false, "{first}");
    let before_objects = lab.objects("lib");
    // The same bytes under another name: the id is the bytes' hash, not the name.
    let copy = lab.inputs().join("renamed copy.wav");
    std::fs::copy(&input, &copy).unwrap();

    let before = lab.s3.requests().len();
    let again = lab.ingest_ok("lib", &copy);
    assert_eq!(again["existing"], true, "{again}");
    assert_eq!(again["id"], first["id"]);
    let requests = lab.s3.requests()[before..].to_vec();
    let record = format!("/tracks/{}/track.json", first["id"].as_str().unwrap());
    let head = requests
        .iter()
        .position(|r| r.starts_with("HEAD ") && r.contains(&record))
        .unwrap_or_else(|| panic!("no HEAD of the record in {requests:#?}"));
    let written = puts(&requests[head..]);
    assert!(
        written.is_empty(),
        "PUTs after the record was found: {written:#?}"
    );
    assert!(puts(&requests).is_empty(), "PUTs in a no-op: {requests:#?}");
    assert_eq!(lab.objects("lib"), before_objects);
    assert_eq!(lab.list_ids("lib").len(), 1);
}

#[test]
fn three_concurrent_ingests_of_one_file_make_one_complete_track() {
    let lab = Lab::start();
    let input = make_wav(&lab.inputs(), "song.wav", 44_100, 6.0);
    let runs: Vec<_> = (0..3).map(|_| lab.start_ingest("lib", &[&input])).collect();
    let done: Vec<_> = runs.into_iter().map(|r| r.wait(RUN_LIMIT)).collect();
    let mut ids = BTreeSet::new();
    for run in &done {
        assert_eq!(run.code, 0, "{run:?}");
        let line = &run.json_lines()[0];
        assert_eq!(line["status"], "ok", "{line}");
        ids.insert(line["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.pop_first().unwrap();
    assert_eq!(lab.list_ids("lib"), vec![id.clone()]);

    let objects = lab.objects("lib");
    let record: TrackRecord =
        serde_json::from_slice(&objects[&format!("tracks/{id}/track.json")]).unwrap();
    let expected: BTreeSet<String> = record
        .files()
        .iter()
        .map(|f| format!("tracks/{id}/{f}"))
        .collect();
    let present: BTreeSet<String> = objects.keys().cloned().collect();
    assert_eq!(present, expected, "not exactly the record's files");
    for r in &record.renditions {
        for (i, size) in r.segment_sizes.iter().enumerate() {
            let key = format!("tracks/{id}/{}/{}.m4s", r.dir, i + 1);
            assert_eq!(objects[&key].len() as u64, *size, "{key}");
        }
    }
}
