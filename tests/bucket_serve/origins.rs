//! Several origins on one bucket: a track that a third machine ingests appears on every running
//! origin, in the API and as a WebSocket `library` event, by the origins' rescans of the bucket
//! (`--rescan-secs`), with no restart.

use std::time::{Duration, Instant};

use crate::fixture::{BucketLibrary, assert_no_panic};
use crate::support::send;
use crate::ws::{hello, next_of, open};

/// The longest a new track may take to appear on an origin that rescans every second.
const APPEAR_LIMIT: Duration = Duration::from_secs(15);

/// The ids `/api/tracks` lists on the origin at `addr`.
async fn listed(addr: std::net::SocketAddr) -> Vec<String> {
    let resp = send(addr, "GET", "/api/tracks", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["tracks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["id"].as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_ingested_elsewhere_appears_on_every_origin_of_the_bucket() {
    let bucket = BucketLibrary::new();
    let (first, origins) = tokio::task::block_in_place(|| {
        let first = bucket.ingest("ingester", &bucket.wav("first.wav", 3.0));
        let rescan = ["--rescan-secs", "1"];
        let origins = [
            bucket.serve("origin-a", &rescan),
            bucket.serve("origin-b", &rescan),
        ];
        (first, origins)
    });
    let mut sockets = Vec::new();
    for (i, origin) in origins.iter().enumerate() {
        assert_eq!(
            listed(origin.addr).await,
            vec![first.clone()],
            "origin {i} at start"
        );
        let mut socket = open(origin.addr, &[]).await.expect("the upgrade");
        hello(&mut socket, &format!("watch-{i}"), "Watcher").await;
        sockets.push(socket);
    }
    // A third machine, with a catalog of its own, ingests while the origins serve.
    let new = tokio::task::block_in_place(|| {
        bucket.ingest("other-ingester", &bucket.wav("second.wav", 4.0))
    });
    // Another length: the generated audio differs, so it is another track.
    assert_ne!(new, first, "a second track, not the first again");
    let ingested = Instant::now();
    for (i, origin) in origins.iter().enumerate() {
        loop {
            let ids = listed(origin.addr).await;
            if ids.contains(&new) {
                assert!(ids.contains(&first), "origin {i} lost {first}: {ids:?}");
                break;
            }
            assert!(
                ingested.elapsed() < APPEAR_LIMIT,
                "origin {i} does not list {new} {APPEAR_LIMIT:?} after its ingest: {ids:?}\nlog:\n{}",
                origin.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resp = send(
            origin.addr,
            "GET",
            &format!("/media/{new}/master.m3u8"),
            &[],
        )
        .await;
        assert_eq!(resp.status, 200, "origin {i} serves the new track");
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        let library = next_of(socket, "library").await;
        let added = library["added"].as_array().expect("an added list");
        assert_eq!(added.len(), 1, "origin {i}: {library}");
        assert_eq!(added[0]["id"], new.as_str(), "origin {i}: {library}");
    }
    for origin in &origins {
        assert_no_panic(origin, "an origin");
    }
}
