//! The bucket fails while an origin serves: first it hangs (SIGSTOP: connections accepted,
//! nothing answered), then it vanishes (SIGKILL) and comes back empty, to be filled again.
//! Objects the origin already fetched are still served whole from its cache; any other answers
//! 503 with `Retry-After` within a bound (never a 200 with a truncated body); `/readyz` is 503
//! and `/healthz` names the bucket unreachable; once the bucket answers again the same request
//! gets 200 and `/readyz` 200. Nothing panics.

use std::time::{Duration, Instant};

use segue::store::layout::segment_name;

use crate::common::ServeProcess;
use crate::fixture::{BucketLibrary, assert_no_panic};
use crate::support::{Resp, send};

/// How long an origin may take to give up on a hung or vanished bucket. object_store's own
/// timeouts make it about 10 s today; a server-side deadline will make it shorter.
const GIVE_UP_LIMIT: Duration = Duration::from_secs(15);
/// How long the origin may take to notice a bucket is back (it rescans every second).
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);

/// GET `url` on `server`, asserting it is answered within [`GIVE_UP_LIMIT`].
async fn get_bounded(server: &ServeProcess, url: &str) -> Resp {
    let started = Instant::now();
    let resp = send(server.addr, "GET", url, &[]).await;
    let took = started.elapsed();
    assert!(took < GIVE_UP_LIMIT, "GET {url} took {took:?}");
    resp
}

/// Polls `url` until its status is `status`, for at most `limit`; the last response.
async fn await_status(server: &ServeProcess, url: &str, status: u16, limit: Duration) -> Resp {
    let started = Instant::now();
    loop {
        let resp = send(server.addr, "GET", url, &[]).await;
        if resp.status == status || started.elapsed() > limit {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts `resp` is a 503 that tells the client when to retry.
fn assert_unavailable(resp: &Resp, what: &str) {
    let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned();
    assert_eq!(
        resp.status,
        503,
        "{what}: {} bytes: {body:?}",
        resp.body.len()
    );
    let retry = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!(
        retry.parse::<u64>().is_ok_and(|s| s > 0),
        "{what}: Retry-After {retry}"
    );
}

/// Asserts the origin reports the bucket down: `/readyz` 503 (within [`GIVE_UP_LIMIT`], the
/// time a failed request or rescan takes), `/healthz` still 200 naming the bucket unreachable.
async fn assert_reported_down(server: &ServeProcess, when: &str) {
    let readyz = await_status(server, "/readyz", 503, GIVE_UP_LIMIT).await;
    assert_unavailable(&readyz, &format!("/readyz {when}"));
    let healthz = send(server.addr, "GET", "/healthz", &[]).await;
    let text = healthz.text();
    assert_eq!(healthz.status, 200, "/healthz {when}: {text}");
    assert!(text.starts_with("ok\n"), "/healthz {when}: {text}");
    assert!(
        text.contains("bucket: unreachable"),
        "/healthz {when}: {text}"
    );
}

/// Asserts `url` is served again in full (the object's bytes in the bucket) and `/readyz` is 200.
async fn assert_recovered(bucket: &BucketLibrary, server: &ServeProcess, url: &str, key: &str) {
    let resp = await_status(server, url, 200, RECOVERY_LIMIT).await;
    assert_eq!(resp.status, 200, "{url} after recovery: {}", resp.text());
    let object = bucket.object(key).await;
    assert!(resp.body == object, "{url}: not the object's bytes");
    let readyz = await_status(server, "/readyz", 200, RECOVERY_LIMIT).await;
    assert_eq!(
        readyz.status,
        200,
        "/readyz after recovery: {}",
        readyz.text()
    );
    let healthz = send(server.addr, "GET", "/healthz", &[]).await.text();
    assert!(healthz.contains("bucket: reachable"), "/healthz: {healthz}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bucket_gives_503_for_uncached_objects_and_the_cache_serves_the_rest() {
    let mut bucket = BucketLibrary::new();
    let (input, id, server) = tokio::task::block_in_place(|| {
        let input = bucket.wav("song.wav", 4.0);
        let id = bucket.ingest("ingester", &input);
        (input, id, bucket.serve("origin", &["--rescan-secs", "1"]))
    });
    let record = bucket.record(&id).await;
    let dir = &record.renditions[0].dir;
    let file = |rel: String| (format!("/media/{id}/{rel}"), format!("tracks/{id}/{rel}"));
    let fetched = [
        file("master.m3u8".into()),
        file(format!("{dir}/init.mp4")),
        file(format!("{dir}/{}", segment_name(0))),
    ];
    let mut cached = Vec::new();
    for (url, _) in &fetched {
        let resp = send(server.addr, "GET", url, &[]).await;
        assert_eq!(resp.status, 200, "{url} with the bucket up");
        cached.push(resp.body);
    }
    let assert_cache_serves = |when: &'static str| {
        let (fetched, cached, server) = (&fetched, &cached, &server);
        async move {
            for ((url, _), body) in fetched.iter().zip(cached) {
                let resp = get_bounded(server, url).await;
                assert_eq!(resp.status, 200, "{url} from the cache {when}");
                assert!(
                    resp.body == *body,
                    "{url} from the cache {when}: other bytes"
                );
            }
        }
    };

    // The bucket hangs.
    bucket.s3.pause();
    assert_cache_serves("while the bucket hangs").await;
    let (hung_url, hung_key) = file(format!("{dir}/{}", segment_name(1)));
    let read = tokio::task::block_in_place(|| bucket.s3.requests());
    let never_read = !read
        .iter()
        .any(|r| r.starts_with("GET ") && r.contains(&hung_key));
    assert!(
        never_read,
        "{hung_key} was read before the outage: {read:#?}"
    );
    assert_unavailable(
        &get_bounded(&server, &hung_url).await,
        "while the bucket hangs",
    );
    assert_reported_down(&server, "while the bucket hangs").await;
    bucket.s3.resume();
    assert_recovered(&bucket, &server, &hung_url, &hung_key).await;

    // The bucket vanishes, and comes back empty: an operator restores it by ingesting again.
    // The object asked for then is one of another rendition, which the origin never read (it
    // may read ahead within a rendition).
    let top = &record.renditions[record.renditions.len() - 1].dir;
    let last = segment_name(record.segment_durations.len() - 1);
    let (gone_url, gone_key) = file(format!("{top}/{last}"));
    let read = tokio::task::block_in_place(|| bucket.s3.requests());
    let never_read = !read
        .iter()
        .any(|r| r.starts_with("GET ") && r.contains(&gone_key));
    assert!(
        never_read,
        "{gone_key} was read before the outage: {read:#?}"
    );
    bucket.s3.stop();
    assert_cache_serves("while the bucket is gone").await;
    assert_unavailable(
        &get_bounded(&server, &gone_url).await,
        "while the bucket is gone",
    );
    assert_reported_down(&server, "while the bucket is gone").await;
    tokio::task::block_in_place(|| {
        bucket.s3.restart();
        assert_eq!(bucket.ingest("restorer", &input), id, "the same id again");
    });
    assert_recovered(&bucket, &server, &gone_url, &gone_key).await;
    assert_cache_serves("after all").await;
    assert_no_panic(&server, "the origin");
}
