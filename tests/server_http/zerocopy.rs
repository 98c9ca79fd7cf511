//! Cached segments sent from their files with sendfile (src/server/zerocopy.rs): the bytes on
//! the wire are the file's, for whole bodies and ranges, across keep-alive responses.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Reads `count` responses from `stream`; `heads[i]` says whether response `i` answers a HEAD.
async fn read_responses(stream: &mut TcpStream, heads: &[bool]) -> Vec<Resp> {
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while out.len() < heads.len() {
        if let Some((head, rest)) = split_head(&raw) {
            let resp = parse_head(head, Vec::new());
            let len = match heads[out.len()] {
                true => 0,
                false => resp.header("content-length").unwrap().parse().unwrap(),
            };
            if rest.len() >= len {
                let consumed = head.len() + 4 + len;
                out.push(parse_head(head, rest[..len].to_vec()));
                raw.drain(..consumed);
                continue;
            }
        }
        let n = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "connection closed after {} responses", out.len());
        raw.extend_from_slice(&chunk[..n]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_sent_from_files_arrive_byte_exact_on_one_connection() {
    let (fx, server) = setup().await;
    // The largest segment of the top rendition: well over the zero-copy threshold.
    let dir = fx
        .track_dir()
        .join(fx.rendition_dir(fx.record.renditions.len() - 1));
    let (name, bytes) = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "m4s"))
        .map(|p| {
            (
                p.file_name().unwrap().to_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .max_by_key(|(_, b)| b.len())
        .unwrap();
    assert!(bytes.len() > 20_000, "segment of {} bytes", bytes.len());
    let rel = format!(
        "{}/{}",
        fx.rendition_dir(fx.record.renditions.len() - 1),
        name.to_str().unwrap()
    );
    let url = fx.url(&rel);

    let host = server.addr.to_string();
    let request = |method: &str, extra: &str| {
        format!("{method} {url} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").into_bytes()
    };
    let mut pipeline = Vec::new();
    pipeline.extend(request("GET", "")); // a miss: read from disk, file kept open
    pipeline.extend(request("GET", "")); // a hit
    pipeline.extend(request("GET", "Range: bytes=100-20099\r\n"));
    pipeline.extend(request("HEAD", ""));
    pipeline.extend(request("GET", "Accept-Encoding: gzip, br\r\n"));
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&pipeline).await.unwrap();
    let got = read_responses(&mut stream, &[false, false, false, true, false]).await;

    for i in [0, 1, 4] {
        assert_eq!(got[i].status, 200, "response {i}");
        assert!(
            got[i].body == bytes,
            "response {i}: body differs from the file"
        );
    }
    assert_eq!(got[2].status, 206);
    assert!(
        got[2].body == bytes[100..20_100],
        "range differs from the file"
    );
    assert_eq!((got[3].status, got[3].body.len()), (200, 0));

    // The counter moves when `sendfile` returns, which on a loaded machine can be after this
    // client has read the bytes: wait (bounded) for it; a body that was copied never counts.
    let expected = 3 * bytes.len() + 20_000;
    let series = "segue_zero_copy_bytes_total";
    let text = server.metrics_once(series, expected as f64).await;
    let sent = metric(&text, series) as usize;
    assert_eq!(sent, expected, "bytes sent with sendfile");
    server.stop().await;
}
