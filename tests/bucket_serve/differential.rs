//! The RFC 9110 battery, differential: one track ingested into a local library and into a
//! bucket (the same bytes under the same keys), an origin on each, and one table of requests
//! sent to both. Each answer must have the status the local origin is known to give
//! (`tests/server_http`) and the bucket origin must give the same status, the same headers that
//! matter to a cache or a player, and the same body.

use std::io::Read;

use segue::store::layout::segment_name as layout_segment_name;

use crate::common::{ServeProcess, TempLibrary, ingest_one};
use crate::fixture::{BucketLibrary, assert_no_panic};
use crate::support::{Resp, send};

/// Length of the track, in seconds.
const SECONDS: f64 = 4.0;

/// Headers compared as they are.
const COMPARED: [&str; 13] = [
    "etag",
    "cache-control",
    "content-range",
    "content-encoding",
    "vary",
    "accept-ranges",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "link",
    "retry-after",
];

/// One request of the battery: what to send and the status the local library gives.
struct Case {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    status: u16,
}

/// Stands for the origin's own `Last-Modified` of the target in a header value: the two
/// libraries were written at different times, so their dates differ.
const OWN_LAST_MODIFIED: &str = "$last-modified";

fn case(method: &'static str, target: &str, headers: &[(&'static str, &str)], status: u16) -> Case {
    Case {
        method,
        target: target.to_string(),
        headers: headers.iter().map(|&(k, v)| (k, v.to_string())).collect(),
        status,
    }
}

/// The URL paths of the track `id` the battery asks for: both manifests, and of the rendition
/// `dir` its media playlist, init segment, first and last media segment.
fn files(id: &str, dir: &str, segments: usize) -> Vec<String> {
    let mut rels = vec!["master.m3u8".to_string(), "manifest.mpd".to_string()];
    for rel in [
        "media.m3u8".to_string(),
        "init.mp4".to_string(),
        layout_segment_name(0),
    ] {
        rels.push(format!("{dir}/{rel}"));
    }
    rels.push(format!("{dir}/{}", layout_segment_name(segments - 1)));
    rels.iter()
        .map(|rel| format!("/media/{id}/{rel}"))
        .collect()
}

/// The battery for the track `id` (rendition `dir`), whose `files` have the given strong tags.
fn battery(id: &str, dir: &str, files: &[(String, String)]) -> Vec<Case> {
    let media = |rel: &str| format!("/media/{id}/{rel}");
    let mut cases = Vec::new();
    for (url, etag) in files {
        let (url, etag) = (url.as_str(), etag.as_str());
        let origin = ("Origin", "http://player.example");
        cases.push(case("GET", url, &[], 200));
        cases.push(case("GET", url, &[origin], 200));
        cases.push(case("HEAD", url, &[], 200));
        cases.push(case("GET", url, &[("If-None-Match", etag)], 304));
        cases.push(case("GET", url, &[("If-None-Match", "\"nope\"")], 200));
        cases.push(case("GET", url, &[("If-Match", "\"nope\"")], 412));
        cases.push(case("GET", url, &[("If-Match", etag)], 200));
        let ims = ("If-Modified-Since", OWN_LAST_MODIFIED);
        cases.push(case("GET", url, &[ims], 304));
        for coding in ["gzip", "br", "gzip;q=0.5, br"] {
            cases.push(case("GET", url, &[("Accept-Encoding", coding)], 200));
        }
        let ranges = [
            ("bytes=0-99", 206),
            ("bytes=100-", 206),
            ("bytes=-500", 206),
            ("bytes=200-299, 0-9", 206),
            ("bytes=200-299, 0-9, 99999999-", 206),
            ("bytes=99999999-", 416),
            ("bytes=-0", 416),
            ("bytes=0-99,50-150", 200),
            ("items=0-5", 200),
        ];
        for (range, status) in ranges {
            cases.push(case("GET", url, &[("Range", range)], status));
        }
        let range = ("Range", "bytes=0-9");
        cases.push(case("GET", url, &[range, ("If-Range", etag)], 206));
        let stale = ("If-Range", "\"0123456789abcdef\"");
        cases.push(case("GET", url, &[range, stale], 200));
        let br = ("Accept-Encoding", "br");
        cases.push(case("GET", url, &[br, ("Range", "bytes=0-6")], 206));
    }
    for missing in ["track.json", "nope.m4s", &format!("{dir}/999.m4s")] {
        cases.push(case("GET", &media(missing), &[], 404));
    }
    let other =
        "/media/0000000000000000000000000000000000000000000000000000000000000000/master.m3u8";
    cases.push(case("GET", other, &[], 404));
    let gz = ("Accept-Encoding", "gzip");
    for api in [
        "/api/tracks".to_string(),
        format!("/api/tracks/{id}"),
        format!("/api/prefetch?track={id}&bandwidth=100000000"),
        format!("/api/prefetch?track={id}&bandwidth=1"),
    ] {
        cases.push(case("GET", &api, &[], 200));
        cases.push(case("GET", &api, &[gz], 200));
    }
    cases.push(case("GET", "/api/tracks/nope", &[], 404));
    cases
}

/// `body` decoded from the response's Content-Encoding, with a multipart boundary replaced by
/// a fixed one (each origin draws its own).
fn comparable_body(resp: &Resp) -> Vec<u8> {
    let mut body = Vec::new();
    match resp.header("content-encoding") {
        Some("gzip") => {
            let mut gz = flate2::read::GzDecoder::new(&resp.body[..]);
            gz.read_to_end(&mut body).expect("a gzip body");
        }
        Some("br") => {
            let mut br = brotli::Decompressor::new(&resp.body[..], 4096);
            br.read_to_end(&mut body).expect("a br body");
        }
        _ => body = resp.body.clone(),
    }
    match boundary(resp) {
        Some(b) => replace(&body, b.as_bytes(), b"BOUNDARY"),
        None => body,
    }
}

fn boundary(resp: &Resp) -> Option<String> {
    let ty = resp.header("content-type")?;
    Some(ty.split_once("boundary=")?.1.trim_matches('"').to_string())
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// What must be equal between the two origins' answers to one request.
fn fingerprint(resp: &Resp) -> Vec<(String, Option<String>)> {
    let mut fields: Vec<(String, Option<String>)> = COMPARED
        .iter()
        .map(|&name| (name.to_string(), resp.header(name).map(str::to_string)))
        .collect();
    let ty = resp.header("content-type").map(|t| match boundary(resp) {
        Some(b) => t.replace(&b, "BOUNDARY"),
        None => t.to_string(),
    });
    fields.push(("content-type".into(), ty));
    // A multipart body's length depends on the boundary's.
    if boundary(resp).is_none() {
        let len = resp.header("content-length").map(str::to_string);
        fields.push(("content-length".into(), len));
    }
    let lm = resp.header("last-modified").map(|_| "present".to_string());
    fields.push(("last-modified".into(), lm));
    fields
}

/// Sends `case` to `server`, with its own Last-Modified of the target where the case says.
async fn ask(server: &ServeProcess, case: &Case) -> Resp {
    let mut headers = Vec::new();
    for (name, value) in &case.headers {
        let value = if value == OWN_LAST_MODIFIED {
            let plain = send(server.addr, "GET", &case.target, &[]).await;
            plain.header("last-modified").unwrap_or("none").to_string()
        } else {
            value.clone()
        };
        headers.push((*name, value));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    send(server.addr, case.method, &case.target, &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_origin_answers_the_rfc_9110_battery_exactly_as_a_local_one() {
    let bucket = BucketLibrary::new();
    let local = TempLibrary::new();
    let (id, bucket_id, local_server, bucket_server, record) = tokio::task::block_in_place(|| {
        let input = bucket.wav("song.wav", SECONDS);
        let id = ingest_one(&local.library(), &input);
        let bucket_id = bucket.ingest("ingester", &input);
        let local_server = ServeProcess::start(&local.library(), &[]);
        let bucket_server = bucket.serve("origin", &[]);
        let record = local.record(&id);
        (id, bucket_id, local_server, bucket_server, record)
    });
    assert_eq!(
        bucket_id, id,
        "the same input has the same id in both libraries"
    );
    let dir = record.renditions.last().expect("renditions").dir.clone();
    let mut tagged = Vec::new();
    // The tags the local origin gives (the reference), which the conditional cases name.
    for url in files(&id, &dir, record.segment_durations.len()) {
        let resp = send(local_server.addr, "GET", &url, &[]).await;
        let tag = resp
            .header("etag")
            .unwrap_or_else(|| panic!("{url}: no ETag"));
        tagged.push((url.clone(), tag.to_string()));
    }
    let cases = battery(&id, &dir, &tagged);
    let mut differences = Vec::new();
    for case in &cases {
        let (l, b) = (
            ask(&local_server, case).await,
            ask(&bucket_server, case).await,
        );
        let what = format!("{} {} {:?}", case.method, case.target, case.headers);
        if l.status != case.status {
            differences.push(format!(
                "{what}: local gave {}, not {}",
                l.status, case.status
            ));
        }
        if b.status != l.status {
            differences.push(format!(
                "{what}: bucket {} but local {}",
                b.status, l.status
            ));
            continue;
        }
        let (lf, bf) = (fingerprint(&l), fingerprint(&b));
        for (lh, bh) in lf.iter().zip(&bf) {
            if lh != bh {
                differences.push(format!(
                    "{what}: {} bucket {:?} local {:?}",
                    lh.0, bh.1, lh.1
                ));
            }
        }
        if comparable_body(&l) != comparable_body(&b) {
            differences.push(format!(
                "{what}: bodies differ ({} bytes local, {} bucket)",
                l.body.len(),
                b.body.len()
            ));
        }
    }
    assert_no_panic(&bucket_server, "the bucket origin");
    assert!(
        differences.is_empty(),
        "{} of {} requests differ:\n{}\nbucket origin log:\n{}",
        differences.len(),
        cases.len(),
        differences.join("\n"),
        bucket_server.log_tail(30)
    );
}
