//! kill -9 of `segue ingest` at several points of its uploads: nothing becomes visible, and
//! `segue gc` then finds exactly the leftovers, deletes them only when asked, only once old
//! enough, and never a committed track's object nor anything outside its library prefix.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::make_wav;
use crate::support::{Lab, RUN_LIMIT, puts};

/// Points of the kill, as fractions of a whole ingest's PUTs. The last is short of the end:
/// the manifests and the record follow the last segments within milliseconds.
const KILL_POINTS: [f64; 3] = [0.1, 0.5, 0.75];

/// The keys a gc report lists under `field`.
fn reported(report: &serde_json::Value, field: &str) -> BTreeSet<String> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn killed_ingests_leave_nothing_visible_and_gc_removes_exactly_their_leftovers() {
    let lab = Lab::start();
    let keep = make_wav(&lab.inputs(), "keep.wav", 44_100, 3.0);
    let long = make_wav(&lab.inputs(), "long.wav", 44_100, 120.0);

    // How many PUTs a whole ingest of `long` makes, in a library of its own (which gc of
    // `lib` must not touch either).
    let before = lab.s3.requests().len();
    lab.ingest_ok("other", &long);
    let whole = puts(&lab.s3.requests()[before..]).len();
    let other = lab.objects("other");
    assert!(whole > 30, "only {whole} PUTs in a whole ingest");

    let kept_id = lab.ingest_ok("lib", &keep)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = lab.objects("lib");

    for point in KILL_POINTS {
        let start = lab.s3.requests_now().len();
        let target = (whole as f64 * point).ceil() as usize;
        let mut ingest = lab.start_ingest("lib", &[&long]);
        let began = Instant::now();
        loop {
            let seen = lab.s3.requests_now();
            if puts(&seen[start..]).len() >= target {
                break;
            }
            assert!(
                !ingest.has_exited(),
                "the ingest ended before {target} PUTs"
            );
            assert!(
                began.elapsed() < RUN_LIMIT,
                "no {target} PUTs in {RUN_LIMIT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
        ingest.kill9();
        let done = ingest.wait(Duration::from_secs(10));
        assert_eq!(done.code, -1, "not killed at {point}: {done:?}");
        // The worker dies with its parent: nothing is written after the kill.
        thread::sleep(Duration::from_millis(500));
        let records: Vec<_> = lab
            .keys("lib")
            .into_iter()
            .filter(|k| k.ends_with("/track.json"))
            .collect();
        assert_eq!(
            records,
            vec![format!("tracks/{kept_id}/track.json")],
            "a record after a kill at {point}"
        );
        assert_eq!(lab.list_ids("lib"), vec![kept_id.clone()], "at {point}");
    }

    let all: BTreeSet<String> = lab.keys("lib").into_iter().collect();
    let committed: BTreeSet<String> = kept.keys().cloned().collect();
    let leftovers: BTreeSet<String> = all.difference(&committed).cloned().collect();
    assert!(!leftovers.is_empty(), "the kills left nothing");

    // The default grace (24 h): everything is new, nothing goes.
    let report = lab.gc("lib", &[]);
    assert_eq!(report["objects"], 0, "{report}");
    assert_eq!(report["kept_recent"], leftovers.len(), "{report}");
    assert_eq!(lab.keys("lib").into_iter().collect::<BTreeSet<_>>(), all);

    // Listed times are whole seconds: let a second pass so "older than 0s" is true of all.
    thread::sleep(Duration::from_millis(1100));
    let dry = lab.gc("lib", &["--older-than", "0s", "--dry-run"]);
    assert_eq!(reported(&dry, "deleted"), leftovers, "dry run");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(lab.keys("lib").into_iter().collect::<BTreeSet<_>>(), all);

    let real = lab.gc("lib", &["--older-than", "0s"]);
    assert_eq!(reported(&real, "deleted"), leftovers, "{real}");
    assert!(reported(&real, "failed").is_empty(), "{real}");
    assert_eq!(lab.objects("lib"), kept, "the committed track changed");
    assert_eq!(lab.list_ids("lib"), vec![kept_id]);
    assert_eq!(
        lab.objects("other"),
        other,
        "gc reached outside its library"
    );

    // Nothing left to collect.
    let again = lab.gc("lib", &["--older-than", "0s"]);
    assert_eq!(again["objects"], 0, "{again}");
}
