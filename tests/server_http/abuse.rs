//! Slow and greedy clients: a request head trickled byte by byte (slowloris), more connections
//! than the cap, an oversized head. Each is cut off cleanly while a normal client is served.

use std::time::Duration;

use segue::config::{ConnLimits, ServeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::*;

async fn limited(limits: ConnLimits) -> (Fixture, Running) {
    let fixture = Fixture::new(SECONDS).await;
    let mut config =
        ServeConfig::new(fixture.lib.library().into(), "127.0.0.1:0", "*", 64).unwrap();
    config.conn_limits = limits;
    let server = Running::start_config(config).await;
    (fixture, server)
}

/// GET `target` once the server admits the connection: a connection just closed by the client
/// gives its slot back when the server has seen it close, so a 503 is retried (bounded).
async fn admitted(server: &Running, target: &str) -> Resp {
    let mut resp = server.get(target, &[]).await;
    for _ in 0..100 {
        if resp.status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        resp = server.get(target, &[]).await;
    }
    resp
}

/// Reads until the server closes; returns what it sent.
async fn read_to_close(tcp: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_off_and_others_are_served() {
    let (fx, server) = limited(ConnLimits {
        header_timeout: Duration::from_secs(2),
        ..ConnLimits::default()
    })
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let trickle = async {
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*byte]).await.is_err() {
                return true; // cut off
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    };
    let normal = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.get(&fx.url("master.m3u8"), &[]).await.status
    };
    let (cut, status) = tokio::join!(trickle, normal);
    assert_eq!(status, 200, "a normal client is served meanwhile");
    // Either a write failed, or the server has closed (with a 408 or nothing).
    let cut = cut
        || read_to_close(&mut slow, Duration::from_secs(5))
            .await
            .is_some();
    assert!(cut, "the slowloris connection was never closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_a_clean_503() {
    let (fx, server) = limited(ConnLimits {
        max_connections: 3,
        ..ConnLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let refusal = read_to_close(&mut extra, Duration::from_secs(5))
        .await
        .expect("the refused connection is closed");
    let text = String::from_utf8_lossy(&refusal);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    // Once one is released, a normal request is served again.
    held.pop();
    assert_eq!(admitted(&server, &fx.url("master.m3u8")).await.status, 200);
    drop(held);
    let metrics = admitted(&server, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        metric(&text, "segue_refused_connections_total") >= 1.0,
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused_with_431() {
    let (fx, server) = limited(ConnLimits::default()).await;
    let big = "a".repeat(32 * 1024);
    let resp = server.get(&fx.url("master.m3u8"), &[("x-big", &big)]).await;
    assert_eq!(resp.status, 431);
    assert_eq!(server.get(&fx.url("master.m3u8"), &[]).await.status, 200);
    server.stop().await;
}
