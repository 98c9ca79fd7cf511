//! The bucket's faults during `segue ingest` (and `gc`): unreachable at start, credentials
//! refused, gone mid-ingest, hanging. Each fails cleanly, says what and where, within a bound.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use segue::store::bucket::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, RETRY_TIMEOUT};

use crate::common::make_wav;
use crate::common::s3::{BUCKET, REGION, S3Server};
use crate::support::{Lab, Running, puts, segue_command, vars};

/// Longest one bucket request may fail in (bucket.rs): attempts until [`RETRY_TIMEOUT`], then
/// a last one of at most [`REQUEST_TIMEOUT`] (after connecting, [`CONNECT_TIMEOUT`]), after a
/// backoff of at most a second.
fn request_bound() -> Duration {
    RETRY_TIMEOUT + CONNECT_TIMEOUT + REQUEST_TIMEOUT + Duration::from_secs(1)
}

/// Waits until `lab`'s server has logged `n` PUTs since request `start`, while `ingest` runs.
fn await_puts(lab: &Lab, ingest: &mut Running, start: usize, n: usize) {
    let began = Instant::now();
    while puts(&lab.s3.requests_now()[start..]).len() < n {
        assert!(!ingest.has_exited(), "the ingest ended before {n} PUTs");
        assert!(began.elapsed() < Duration::from_secs(60), "no {n} PUTs");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_unreachable_bucket_fails_at_once_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = make_wav(tmp.path(), "song.wav", 44_100, 1.0);
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("AWS_ENDPOINT_URL".to_string(), endpoint.clone()),
        ("AWS_REGION".to_string(), REGION.to_string()),
        ("AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "s".to_string()),
    ];
    let library = format!("s3://{BUCKET}/lib");
    for args in [
        vec![
            "ingest",
            "--json",
            "--library",
            &library,
            input.to_str().unwrap(),
        ],
        vec!["gc", "--library", &library],
    ] {
        let command = segue_command(&env, &tmp.path().join("cache"), &args);
        let done = Running::spawn(command).wait(Duration::from_secs(60));
        assert_eq!(done.code, 2, "{args:?}: {done:?}");
        let lines: Vec<_> = done
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line: {:?}", done.stderr);
        assert!(lines[0].contains(&endpoint), "no endpoint: {}", lines[0]);
        assert!(lines[0].contains(BUCKET), "no bucket: {}", lines[0]);
        assert!(done.stdout.is_empty(), "{done:?}");
        assert!(
            done.elapsed < request_bound() * 2,
            "{args:?} took {:?}",
            done.elapsed
        );
    }
}

#[test]
fn refused_credentials_name_the_bucket_and_never_the_secret() {
    let s3 = S3Server::start_checking_credentials();
    let tmp = tempfile::tempdir().unwrap();
    let input = make_wav(tmp.path(), "song.wav", 44_100, 1.0);
    let secret = "wrong-secret-Qx7Rv2Lm9";
    let mut env = vars(&s3);
    for (name, value) in &mut env {
        if name == "AWS_SECRET_ACCESS_KEY" {
            *value = secret.to_string();
        }
    }
    let library = s3.url("lib");
    for args in [
        vec![
            "ingest",
            "--json",
            "--library",
            &library,
            input.to_str().unwrap(),
        ],
        vec!["list", "--library", &library],
        vec!["gc", "--library", &library],
    ] {
        let command = segue_command(&env, &tmp.path().join("cache"), &args);
        let done = Running::spawn(command).wait(Duration::from_secs(60));
        assert_eq!(done.code, 2, "{args:?}: {done:?}");
        assert!(done.stderr.contains(BUCKET), "{args:?}: {}", done.stderr);
        let lines = done.stderr.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(lines, 1, "{args:?}: not one line: {}", done.stderr);
        assert!(
            done.stderr.contains("403") || done.stderr.contains("Access"),
            "{args:?}: the refusal is not said: {}",
            done.stderr
        );
        let everything = format!("{}{}", done.stdout, done.stderr);
        assert!(
            !everything.contains(secret),
            "the secret was printed: {everything}"
        );
    }
    let written = puts(&s3.requests()).into_iter().skip(1).count();
    assert_eq!(written, 0, "PUTs beyond the bucket's creation");
}

#[test]
fn a_bucket_gone_mid_ingest_fails_the_file_before_any_record() {
    let mut lab = Lab::start();
    let long = make_wav(&lab.inputs(), "long.wav", 44_100, 120.0);
    let start = lab.s3.requests().len();
    let mut ingest = lab.start_ingest("lib", &[&long]);
    await_puts(&lab, &mut ingest, start, 10);
    lab.s3.stop();
    let stopped = Instant::now();
    let done = ingest.wait(Duration::from_secs(120));
    assert_eq!(done.code, 1, "{done:?}");
    let line = &done.json_lines()[0];
    assert_eq!(line["status"], "error", "{line}");
    assert_eq!(line["kind"], "store", "{line}");
    assert!(
        line["error"].as_str().unwrap().contains(BUCKET),
        "the error does not name the bucket: {line}"
    );
    assert!(
        stopped.elapsed() < request_bound() * 3,
        "{:?}",
        stopped.elapsed()
    );
    let records: Vec<_> = lab
        .s3
        .requests()
        .into_iter()
        .filter(|r| r.contains("track.json") && r.starts_with("PUT "))
        .collect();
    assert!(records.is_empty(), "a record was written: {records:?}");
    lab.s3.restart();
    assert!(lab.list_ids("lib").is_empty());
}

#[test]
fn a_hanging_bucket_fails_the_ingest_within_the_timeouts() {
    let lab = Lab::start();
    let long = make_wav(&lab.inputs(), "long.wav", 44_100, 120.0);
    let start = lab.s3.requests().len();
    let mut ingest = lab.start_ingest("lib", &[&long]);
    await_puts(&lab, &mut ingest, start, 10);
    lab.s3.pause();
    let paused = Instant::now();
    // Every upload in flight (at most 16, started together) fails within one request bound;
    // one that started while the first failure was on its way, within a second one.
    let bound = request_bound() * 2 + Duration::from_secs(10);
    let done = ingest.wait(bound + Duration::from_secs(30));
    let took = paused.elapsed();
    lab.s3.resume();
    assert!(
        took < bound,
        "the ingest took {took:?} after the pause (bound {bound:?})"
    );
    assert_eq!(done.code, 1, "{done:?}");
    let line = &done.json_lines()[0];
    assert_eq!(line["status"], "error", "{line}");
    assert_eq!(line["kind"], "store", "{line}");
    let records: Vec<_> = lab
        .s3
        .requests()
        .into_iter()
        .filter(|r| r.contains("track.json") && r.starts_with("PUT "))
        .collect();
    assert!(records.is_empty(), "a record was written: {records:?}");
    assert!(lab.list_ids("lib").is_empty());
}
