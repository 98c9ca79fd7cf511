//! Range requests (RFC 9110 14) and If-Range (13.1.5).

use std::time::{Duration, SystemTime};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_and_open_ranges_get_206_with_content_range() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let len = bytes.len();
    let r = server.get(&url, &[("Range", "bytes=0-99")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99/{len}").as_str())
    );
    assert_eq!(r.body, bytes[..100]);
    let r = server.get(&url, &[("Range", "bytes=100-")]).await;
    assert_eq!((r.status, &r.body[..]), (206, &bytes[100..]));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suffix_range_returns_last_bytes() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let r = server.get(&url, &[("Range", "bytes=-500")]).await;
    assert_eq!(r.status, 206);
    let (len, start) = (bytes.len(), bytes.len() - 500);
    let expected = format!("bytes {start}-{}/{len}", len - 1);
    assert_eq!(r.header("content-range"), Some(expected.as_str()));
    assert_eq!(r.body, bytes[start..]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_range_gets_416_with_the_length() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let far = format!("bytes={}-", bytes.len());
    for range in [far.as_str(), "bytes=-0"] {
        let r = server.get(&url, &[("Range", range)]).await;
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{}", bytes.len()).as_str())
        );
    }
    server.stop().await;
}

/// Splits a multipart/byteranges body into (Content-Range, data) parts.
fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap()
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body.to_vec();
    let mut parts = Vec::new();
    let mut rest = &text[..];
    assert!(rest.starts_with(delimiter.as_bytes()));
    loop {
        rest = &rest[delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let (head, after) = split_head(&rest[2..]).expect("part head");
        let head = String::from_utf8(head.to_vec()).unwrap();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        let end = after
            .windows(delimiter.len() + 2)
            .position(|w| w == format!("\r\n{delimiter}").as_bytes())
            .unwrap();
        parts.push((range, after[..end].to_vec()));
        rest = &after[end + 2..];
    }
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_ranges_get_multipart_byteranges() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let len = bytes.len();
    // Out of order, and mixed with an unsatisfiable one: still a 206, never a 416.
    let range = format!("bytes=200-299, 0-9, {}-", len + 10);
    let r = server.get(&url, &[("Range", &range)]).await;
    assert_eq!(r.status, 206);
    let content_type = r.header("content-type").unwrap();
    assert!(content_type.starts_with("multipart/byteranges; boundary="));
    let parts = multipart_parts(content_type, &r.body);
    assert_eq!(
        parts,
        vec![
            (format!("bytes 200-299/{len}"), bytes[200..300].to_vec()),
            (format!("bytes 0-9/{len}"), bytes[..10].to_vec()),
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_or_too_many_ranges_get_the_full_body() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 4, i * 4 + 1))
        .collect();
    let many = format!("bytes={}", many.join(","));
    for range in ["bytes=0-99,50-150", "bytes=0-,0-", many.as_str()] {
        let r = server.get(&url, &[("Range", range)]).await;
        assert_eq!((r.status, r.body.len()), (200, bytes.len()), "{range}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_range_unit_is_ignored() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let r = server.get(&url, &[("Range", "items=0-5")]).await;
    assert_eq!((r.status, &r.body), (200, &bytes));
    assert_eq!(r.header("content-range"), None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_range_gets_full_body() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let full = server.get(&url, &[]).await;
    let etag = full.header("etag").unwrap().to_string();
    let last_modified = full.header("last-modified").unwrap().to_string();
    let range = ("Range", "bytes=0-9");
    // Current validators: the range is honoured.
    let r = server.get(&url, &[range, ("If-Range", &etag)]).await;
    assert_eq!(r.status, 206);
    // Stale (or weak) validators: the whole body, 200.
    let weak = format!("W/{etag}");
    let old_date = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30));
    for stale in ["\"0123456789abcdef\"", weak.as_str(), old_date.as_str()] {
        let r = server.get(&url, &[range, ("If-Range", stale)]).await;
        assert_eq!((r.status, &r.body), (200, &bytes), "If-Range: {stale}");
    }
    // The current date works once the file is more than a second old.
    let r = server
        .get(&url, &[range, ("If-Range", &last_modified)])
        .await;
    let lm = httpdate::parse_http_date(&last_modified).unwrap();
    let strong = lm + Duration::from_secs(1) <= SystemTime::now();
    assert_eq!(r.status, if strong { 206 } else { 200 });
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_abuse_is_bounded_and_never_amplified() {
    let (fx, server) = setup().await;
    let (url, bytes) = fx.segment();
    let len = bytes.len();
    // A thousand tiny ranges: the whole body once, not a thousand parts.
    let thousand: Vec<String> = (0..1000).map(|i| format!("{i}-{i}")).collect();
    let thousand = format!("bytes={}", thousand.join(","));
    // Hundreds of ranges all covering the whole file: still one copy.
    let whole = format!("bytes={}", vec!["0-"; 300].join(","));
    for range in [thousand.as_str(), whole.as_str()] {
        let r = server.get(&url, &[("Range", range)]).await;
        assert_eq!((r.status, r.body.len()), (200, len), "{}", &range[..40]);
    }
    // Offsets past the end, at the edge of u64 and beyond it: still valid syntax (RFC 9110
    // 14.1.1), so a first-pos past the end is unsatisfiable and a suffix longer than the file
    // selects all of it.
    for (range, status) in [
        ("bytes=18446744073709551614-18446744073709551615", 416),
        ("bytes=18446744073709551615-", 416),
        ("bytes=99999999999999999999999-", 416),
        ("bytes=-99999999999999999999999", 206),
        ("bytes=0-18446744073709551615", 206),
    ] {
        let r = server.get(&url, &[("Range", range)]).await;
        assert_eq!(r.status, status, "{range}");
        assert!(r.body.len() <= len, "{range}: {} bytes", r.body.len());
    }
    server.stop().await;
}
