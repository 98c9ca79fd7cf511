//! The API, the player page, live catalog updates, graceful shutdown, metrics and the binary.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lists_and_gets_tracks_with_working_urls() {
    let (fx, server) = setup().await;
    let list = server.get("/api/tracks", &[]).await;
    assert_eq!(
        (list.status, list.header("content-type")),
        (200, Some("application/json"))
    );
    let list = list.json();
    assert_eq!(list["total"], 1);
    let track = &list["tracks"][0];
    let one = server
        .get(&format!("/api/tracks/{}", fx.id), &[])
        .await
        .json();
    assert_eq!(&one, track);
    let rec = &fx.record;
    assert_eq!(track["id"], fx.id.as_str());
    assert_eq!(track["title"], rec.title.as_str());
    let duration = rec.gapless.valid_samples as f64 / f64::from(rec.sample_rate);
    assert_eq!(track["duration"].as_f64(), Some(duration));
    assert_eq!(track["sample_rate"], rec.sample_rate);
    assert_eq!(
        track["gapless"]["priming_samples"],
        rec.gapless.priming_samples
    );
    assert_eq!(
        track["loudness"]["integrated_lufs"],
        rec.loudness.integrated_lufs
    );
    assert_eq!(track["hls"], fx.url("master.m3u8").as_str());
    assert_eq!(track["dash"], fx.url("manifest.mpd").as_str());
    assert!(track["cover"].is_null());
    assert_eq!(
        track["renditions"].as_array().unwrap().len(),
        rec.renditions.len()
    );
    let mut urls = vec![&track["hls"], &track["dash"], &track["waveform"]];
    for r in track["renditions"].as_array().unwrap() {
        assert!(r["codec"].as_str().unwrap().starts_with("mp4a.40."));
        urls.extend([&r["init"], &r["playlist"]]);
    }
    for url in urls {
        assert_eq!(
            server.get(url.as_str().unwrap(), &[]).await.status,
            200,
            "{url}"
        );
    }
    // Pagination, search, and errors as JSON.
    let page = |q: &str| format!("/api/tracks?{q}");
    assert_eq!(
        server.get(&page("offset=1"), &[]).await.json()["tracks"],
        serde_json::json!([])
    );
    assert_eq!(server.get(&page("limit=0"), &[]).await.json()["total"], 1);
    assert_eq!(server.get(&page("q=zzzz"), &[]).await.json()["total"], 0);
    for bad in ["limit=501", "limit=-1", "offset=x", "limit=1.5"] {
        let r = server.get(&page(bad), &[]).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].is_string(), "{bad}");
    }
    let r = server.get("/api/tracks/0123456789abcdef", &[]).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("not found"))
    );
    // The page and its scripts, which list tracks through the API.
    let index = server.get("/", &[]).await;
    assert_eq!(index.status, 200);
    assert!(
        index
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(index.text().contains("/assets/view.js"));
    let core = server.get("/assets/player.js", &[]).await;
    assert_eq!(core.status, 200);
    assert!(
        core.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    let data = server.get("/assets/media.js", &[]).await;
    assert_eq!(data.status, 200);
    assert!(data.text().contains("/api/tracks"));
    // Every module the page's script imports, directly or not, is served as JavaScript.
    let mut modules = vec!["/assets/view.js".to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(url) = modules.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let module = server.get(&url, &[]).await;
        assert_eq!(module.status, 200, "{url}");
        let kind = module.header("content-type").unwrap();
        assert!(kind.starts_with("text/javascript"), "{url}: {kind}");
        let text = module.text();
        for import in text.split("from '").skip(1) {
            // Specifiers are relative to the importing module, and every module is in /assets/.
            let spec = import.split('\'').next().unwrap();
            modules.push(match spec.strip_prefix("./") {
                Some(name) => format!("/assets/{name}"),
                None => spec.to_string(),
            });
        }
    }
    assert!(seen.len() >= 5, "{seen:?}");
    assert_eq!(server.get("/assets/index.html", &[]).await.status, 404);
    assert_eq!(server.get("/assets/nope.js", &[]).await.status, 404);
    assert_eq!(server.get("/healthz", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_track_appears_without_restart() {
    let (fx, server) = setup().await;
    let before = server.get("/api/tracks", &[]).await;
    assert_eq!(before.json()["total"], 1);
    let etag = before.header("etag").unwrap().to_string();
    let lib = fx.lib;
    let (lib, second) = tokio::task::spawn_blocking(move || {
        let id = ingest(&lib, "second.wav", 2.0);
        (lib, id)
    })
    .await
    .unwrap();
    // The old tag no longer validates the list.
    let after = server.get("/api/tracks", &[("If-None-Match", &etag)]).await;
    assert_eq!(
        (after.status, after.json()["total"].as_u64()),
        (200, Some(2))
    );
    assert_eq!(
        server
            .get(&format!("/api/tracks/{second}"), &[])
            .await
            .status,
        200
    );
    let master = server
        .get(&format!("/media/{second}/master.m3u8"), &[])
        .await;
    assert_eq!(master.status, 200);
    drop(lib);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_requests() {
    let fx = Fixture::new(SECONDS).await;
    // Larger than the loopback socket buffers, so the response is still being written when
    // shutdown is signalled.
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(fx.track_dir().join("big.png"), &big).unwrap();
    let mut server = Running::start(&fx.lib.library()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = request_bytes(server.addr, "GET", &fx.url("big.png"), &[]);
    stream.write_all(&request).await.unwrap();
    // Read until the head is in: the request is now in flight.
    let mut raw = Vec::new();
    let mut chunk = vec![0; 64 << 10];
    while split_head(&raw).is_none() {
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the head");
        raw.extend_from_slice(&chunk[..n]);
    }
    server.signal_shutdown();
    tokio::task::yield_now().await;
    assert!(
        !server.is_finished(),
        "serve returned with a response in flight"
    );
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = split_head(&raw).unwrap();
    let resp = parse_head(head, body.to_vec());
    assert_eq!(resp.status, 200);
    assert!(
        resp.body == big,
        "the whole body arrived after shutdown began"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_cache_hits() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    for _ in 0..2 {
        assert_eq!(server.get(&url, &[]).await.status, 200);
    }
    assert_eq!(server.get("/nowhere", &[]).await.status, 404);
    let r = server.get("/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = r.text();
    let media = "route=\"/media/{track_id}/{*path}\"";
    assert_eq!(
        metric(
            &text,
            &format!("segue_http_requests_total{{{media},status=\"200\"}}")
        ),
        2.0
    );
    let unmatched = "segue_http_requests_total{route=\"unmatched\",status=\"404\"}";
    assert_eq!(metric(&text, unmatched), 1.0);
    let sent = metric(
        &text,
        &format!("segue_http_response_body_bytes_total{{{media}}}"),
    );
    assert_eq!(sent, (2 * bytes.len()) as f64);
    assert_eq!(metric(&text, "segue_cache_misses_total"), 1.0);
    assert_eq!(metric(&text, "segue_cache_hits_total"), 1.0);
    assert!(metric(&text, "segue_cache_bytes") >= bytes.len() as f64);
    // The /metrics request's own connection is open while the text is made.
    assert!(metric(&text, "segue_open_connections") >= 1.0);
    assert_eq!(metric(&text, "segue_connections_total"), 4.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_announces_its_address_and_exits_0_on_sigterm() {
    let lib = common::TempLibrary::new();
    let server = spawn_serve(&lib.library(), &[]).await;
    let addr = server.addr;
    assert_ne!(addr.port(), 0);
    assert_eq!(send(addr, "GET", "/healthz", &[]).await.status, 200);
    let (code, server) = terminate(server).await;
    assert_eq!(code, Some(0));
    let rest = server.stdout_after_announcement();
    assert!(rest.is_empty(), "exactly one line on stdout, then {rest:?}");
}
