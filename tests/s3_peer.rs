//! The S3 peer's faithfulness: object_store's S3 client (the one issue 13 builds the bucket
//! library on) against the test server of [`common::s3`], on exactly what segue will rely on.
//!
//! - Create-only puts (`PutMode::Create`, sent as `If-None-Match: *`) answer 412 when the key
//!   exists, also when several race for one key: the track record is the commit point and
//!   several machines may ingest the same file at once.
//! - Ranged GETs (RFC 9110 14.1.2: bounded, open-ended, suffix) give exactly the bytes asked.
//! - ListObjectsV2 with a prefix pages past 1,000 keys (continuation tokens); with a delimiter
//!   it gives the "directories".
//! - HEAD gives size, ETag and Last-Modified; conditional GETs honour them.
//! - DELETE, and multipart uploads (object_store's path for large puts).
//! - A bucket that vanishes or hangs gives an error within a bound set by [`ClientOptions`] and
//!   [`RetryConfig`], and the client works again once it is back.
//!
//! Where moto departs from S3 the test says so: it forgets everything on restart, and it
//! checks `If-None-Match: *` and writes in two steps of a threaded server (not seen to race in
//! 4,800 contended creates, but not atomic by construction).

mod common;

use std::time::{Duration, Instant};

use common::s3::{BUCKET, S3Server};
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, Error, GetOptions, GetRange, ObjectStore, ObjectStoreExt,
    PutMode, PutPayload, RetryConfig, WriteMultipart,
};

/// How long one attempt may take: connecting, and the whole request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Per-request limit; a 12 MiB multipart part on loopback takes well under this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries after a failed attempt (connection refused, timeout, 5xx).
const MAX_RETRIES: usize = 2;
/// No retry starts after this long from the first attempt.
const RETRY_TIMEOUT: Duration = Duration::from_secs(4);
/// The bound a failing request must respect: the retry window plus one last attempt, with
/// margin for a loaded CI machine.
const FAILURE_BOUND: Duration = Duration::from_secs(12);

/// A client for the server's bucket, configured from [`S3Server::env`] exactly as
/// `AmazonS3Builder::from_env` reads those variables (lowercased names parsed as config keys),
/// without touching this process's environment, which parallel tests share.
fn store(s3: &S3Server) -> AmazonS3 {
    // Client options first: `with_client_options` replaces them all, `AWS_ALLOW_HTTP` included.
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(REQUEST_TIMEOUT),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
            },
            max_retries: MAX_RETRIES,
            retry_timeout: RETRY_TIMEOUT,
        });
    for (name, value) in s3.env() {
        let key: AmazonS3ConfigKey = name
            .to_ascii_lowercase()
            .parse()
            .unwrap_or_else(|e| panic!("{name} is an object_store config key: {e}"));
        builder = builder.with_config(key, value);
    }
    builder.build().expect("an S3 client for the test bucket")
}

/// `len` bytes that differ at every offset within 251 bytes, so a shifted range shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The whole object at `key`, which must exist.
async fn read(store: &AmazonS3, key: &Path) -> Vec<u8> {
    match store.get(key).await {
        Ok(result) => result.bytes().await.expect("the body").to_vec(),
        Err(e) => panic!("GET {key}: {e}"),
    }
}

/// Panics unless HEAD of `key` gives NotFound; `when` names the moment, for the message.
async fn assert_absent(store: &AmazonS3, key: &Path, when: &str) {
    match store.head(key).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("HEAD {key} {when} gave {other:?}, not NotFound"),
    }
}

/// A create-only put (`If-None-Match: *`) of `bytes` at `key`.
async fn create(store: &AmazonS3, key: &Path, bytes: &[u8]) -> object_store::Result<()> {
    let payload = PutPayload::from(bytes.to_vec());
    store
        .put_opts(key, payload, PutMode::Create.into())
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_put_refuses_an_existing_key() {
    let s3 = S3Server::start();
    let store = store(&s3);
    let key = Path::from("tracks/abc/track.json");
    create(&store, &key, b"first").await.expect("first create");
    match create(&store, &key, b"second").await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a second create-only put gave {other:?}, not AlreadyExists"),
    }
    let body = read(&store, &key).await;
    assert_eq!(&body[..], b"first", "the refused put changed the object");
    // A plain put still overwrites (the mode segue uses for nothing content-addressed).
    store.put(&key, b"third".to_vec().into()).await.unwrap();
    let body = read(&store, &key).await;
    assert_eq!(&body[..], b"third");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_create_only_puts_make_one_winner() {
    let s3 = S3Server::start();
    let store = store(&s3);
    for round in 0..10 {
        let key = Path::from(format!("race/{round}/track.json"));
        let mut racers = tokio::task::JoinSet::new();
        for racer in 0..16u8 {
            let (store, key) = (store.clone(), key.clone());
            racers.spawn(async move { (racer, create(&store, &key, &[racer; 64]).await) });
        }
        let mut winners = Vec::new();
        while let Some(joined) = racers.join_next().await {
            match joined.unwrap() {
                (racer, Ok(())) => winners.push(racer),
                (_, Err(Error::AlreadyExists { .. })) => {}
                (racer, Err(e)) => panic!("racer {racer}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let body = read(&store, &key).await;
        assert_eq!(
            &body[..],
            &[winners[0]; 64],
            "round {round}: not the winner's bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_gets_give_exactly_the_bytes_asked() {
    let s3 = S3Server::start();
    let store = store(&s3);
    let key = Path::from("media/seg-00001.m4s");
    let bytes = pattern(10_000);
    store.put(&key, bytes.clone().into()).await.unwrap();

    let got = store.get_range(&key, 1000..1500).await.unwrap();
    assert_eq!(&got[..], &bytes[1000..1500]);

    let cases = [
        (GetRange::Bounded(0..1), 0..1),
        (GetRange::Bounded(9_990..10_000), 9_990..10_000),
        (GetRange::Offset(9_000), 9_000..10_000),
        (GetRange::Suffix(300), 9_700..10_000),
    ];
    for (range, expected) in cases {
        let options = GetOptions {
            range: Some(range.clone()),
            ..GetOptions::default()
        };
        let result = store.get_opts(&key, options).await.unwrap();
        assert_eq!(result.range, expected, "{range}: Content-Range");
        assert_eq!(result.meta.size, 10_000, "{range}: the whole size");
        let body = result.bytes().await.unwrap();
        let (start, end) = (expected.start as usize, expected.end as usize);
        assert_eq!(&body[..], &bytes[start..end], "{range}: body");
    }

    // A range past the end is unsatisfiable (416), an error, never an empty 200.
    let past = GetOptions {
        range: Some(GetRange::Offset(20_000)),
        ..GetOptions::default()
    };
    let result = store.get_opts(&key, past).await;
    assert!(result.is_err(), "a range past the end gave {result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_prefix_pages_past_a_thousand_keys() {
    const KEYS: usize = 1100;
    let s3 = S3Server::start();
    let store = store(&s3);
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..KEYS {
        let store = store.clone();
        puts.spawn(async move {
            let key = Path::from(format!("tracks/t{:02}/seg-{i:05}.m4s", i % 10));
            store.put(&key, vec![1u8; 16].into()).await.map(drop)
        });
        if puts.len() >= 16 {
            puts.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(put) = puts.join_next().await {
        put.unwrap().unwrap();
    }
    store
        .put(&"trackside/x".into(), vec![0u8].into())
        .await
        .unwrap();
    store
        .put(&"other/y".into(), vec![0u8].into())
        .await
        .unwrap();

    let listed: Vec<_> = store
        .list(Some(&Path::from("tracks")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), KEYS, "keys under tracks/ (a page is 1000)");
    let mut names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), KEYS, "a key listed twice across pages");
    assert!(
        names.iter().all(|n| n.starts_with("tracks/t")),
        "listed outside the prefix (object_store lists `tracks/`, not `trackside`)"
    );
    assert!(listed.iter().all(|m| m.size == 16 && m.e_tag.is_some()));

    // StartAfter, what a rescan that remembers its last key sends.
    let after = Path::from("tracks/t09/seg-00999.m4s");
    let rest: Vec<_> = store
        .list_with_offset(Some(&Path::from("tracks")), &after)
        .try_collect()
        .await
        .unwrap();
    let rest: Vec<String> = rest.iter().map(|m| m.location.to_string()).collect();
    let expected: Vec<&String> = names
        .iter()
        .filter(|n| n.as_str() > after.as_ref())
        .collect();
    assert_eq!(rest.len(), expected.len(), "keys after {after}");
    assert!(rest.iter().all(|n| n.as_str() > after.as_ref()), "{rest:?}");

    let dirs = store
        .list_with_delimiter(Some(&Path::from("tracks")))
        .await
        .unwrap();
    let prefixes: Vec<String> = dirs.common_prefixes.iter().map(|p| p.to_string()).collect();
    let expected: Vec<String> = (0..10).map(|t| format!("tracks/t{t:02}")).collect();
    assert_eq!(prefixes, expected, "common prefixes");
    assert!(dirs.objects.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gives_size_etag_and_last_modified_and_delete_removes() {
    let s3 = S3Server::start();
    let store = store(&s3);
    let key = Path::from("tracks/abc/cover.jpg");
    let before = unix_now_secs();
    let put = store.put(&key, pattern(777).into()).await.unwrap();
    let meta = store.head(&key).await.unwrap();
    assert_eq!(meta.size, 777);
    assert_eq!(meta.location, key);
    assert!(meta.e_tag.is_some(), "no ETag");
    assert_eq!(meta.e_tag, put.e_tag, "HEAD and PUT disagree on the ETag");
    let modified = meta.last_modified.timestamp();
    assert!(
        (before - 2..=unix_now_secs() + 2).contains(&modified),
        "Last-Modified {modified} is not now ({before})"
    );

    // Conditional GETs, which a revalidating cache sends.
    let etag = meta.e_tag.clone().unwrap();
    let not_modified = GetOptions {
        if_none_match: Some(etag.clone()),
        ..GetOptions::default()
    };
    match store.get_opts(&key, not_modified).await {
        Err(Error::NotModified { .. }) => {}
        other => panic!("If-None-Match with the current ETag gave {other:?}"),
    }
    let mismatch = GetOptions {
        if_match: Some("\"not-the-etag\"".to_string()),
        ..GetOptions::default()
    };
    match store.get_opts(&key, mismatch).await {
        Err(Error::Precondition { .. }) => {}
        other => panic!("If-Match with another ETag gave {other:?}"),
    }

    let seen: Vec<String> = s3
        .requests()
        .into_iter()
        .filter(|r| r.contains("cover.jpg"))
        .collect();
    let expected = [
        "PUT /segue-test/tracks/abc/cover.jpg 200",
        "HEAD /segue-test/tracks/abc/cover.jpg 200",
        "GET /segue-test/tracks/abc/cover.jpg 304",
        "GET /segue-test/tracks/abc/cover.jpg 412",
    ];
    assert_eq!(seen, expected, "the server's request log");

    store.delete(&key).await.unwrap();
    assert_absent(&store, &key, "after DELETE").await;
    match store.get(&key).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("GET after DELETE gave {other:?}"),
    }
    // S3's DELETE of a missing key succeeds (204): gc may delete twice.
    store.delete(&key).await.unwrap();
}

/// Seconds since the Unix epoch, now.
fn unix_now_secs() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_secs()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_put_round_trips() {
    const LEN: usize = 12 * 1024 * 1024;
    const PART: usize = 5 * 1024 * 1024; // S3's smallest part but the last
    let s3 = S3Server::start();
    let store = store(&s3);
    let key = Path::from("big/mix.flac");
    let bytes = pattern(LEN);
    let upload = store.put_multipart(&key).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    writer.write(&bytes);
    let put = writer.finish().await.unwrap();

    let got = store.get(&key).await.unwrap();
    assert_eq!(got.meta.size, LEN as u64);
    assert_eq!(got.meta.e_tag, put.e_tag);
    // S3's ETag of a multipart object is md5(part md5s)-PARTS.
    let etag = put.e_tag.clone().unwrap_or_default();
    assert!(etag.ends_with("-3\""), "multipart ETag {etag}");
    assert!(got.bytes().await.unwrap() == bytes, "the 12 MiB differ");
    let tail = store.get_range(&key, LEN as u64 - 10..LEN as u64).await;
    assert_eq!(&tail.unwrap()[..], &bytes[LEN - 10..]);

    // An upload abandoned before completion leaves no object.
    let key = Path::from("big/abandoned.flac");
    let mut upload = store.put_multipart(&key).await.unwrap();
    upload.put_part(pattern(PART).into()).await.unwrap();
    upload.abort().await.unwrap();
    assert_absent(&store, &key, "after an aborted upload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_bucket_fails_within_the_bound_and_recovers() {
    let mut s3 = S3Server::start();
    let store = store(&s3);
    let key = Path::from("tracks/abc/track.json");
    store.put(&key, b"v1".to_vec().into()).await.unwrap();

    s3.stop();
    let started = Instant::now();
    let result = store.get(&key).await;
    let took = started.elapsed();
    assert!(
        result.is_err(),
        "a GET from a stopped server gave {result:?}"
    );
    assert!(took < FAILURE_BOUND, "the failure took {took:?}");
    let result = store.put(&key, b"v2".to_vec().into()).await;
    assert!(result.is_err(), "a PUT to a stopped server gave {result:?}");

    s3.restart();
    // moto forgets its objects on restart: the bucket is back, empty.
    assert_absent(&store, &key, "after restart").await;
    store.put(&key, b"v3".to_vec().into()).await.unwrap();
    let body = read(&store, &key).await;
    assert_eq!(&body[..], b"v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_bucket_times_out_within_the_bound_and_recovers() {
    let s3 = S3Server::start();
    let store = store(&s3);
    let key = Path::from("tracks/abc/track.json");
    store.put(&key, b"kept".to_vec().into()).await.unwrap();

    s3.pause();
    let started = Instant::now();
    let result = store.get(&key).await;
    let took = started.elapsed();
    s3.resume();
    assert!(
        result.is_err(),
        "a GET from a frozen server gave {result:?}"
    );
    assert!(
        took >= REQUEST_TIMEOUT,
        "failed before the timeout: {took:?}"
    );
    assert!(took < FAILURE_BOUND, "the timeout took {took:?}");

    let body = read(&store, &key).await;
    assert_eq!(&body[..], b"kept", "the object after the pause");
}
