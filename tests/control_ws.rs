//! The WebSocket control channel over a real socket: a tokio-tungstenite client (an independent
//! WebSocket implementation) against `serve` on 127.0.0.1:0. Sessions shared by two devices,
//! prefetch and library events, and every robustness rule of docs/control-protocol.md.

#[path = "control_ws/client.rs"]
mod client;
mod common;
#[path = "server_http/support.rs"]
#[allow(dead_code)] // shared with tests/server_http.rs, which uses the rest
mod support;

use std::time::Duration;

use client::{WAIT, close_code, hello, next_of, open, open_path, send, state_where};
use futures_util::{SinkExt, StreamExt};
use segue::config::ServeConfig;
use serde_json::{Value, json};
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A library of two tracks and a server on it.
async fn two_tracks(config: impl FnOnce(ServeConfig) -> ServeConfig) -> (Fixture, String, Running) {
    let fx = Fixture::new(3.0).await;
    let lib = fx.lib.library();
    let second = {
        let fx_lib = &fx.lib;
        tokio::task::block_in_place(|| ingest(fx_lib, "second.wav", 2.0))
    };
    let base = ServeConfig::new(lib.into(), "127.0.0.1:0", "*", 64).unwrap();
    let server = Running::start_config(config(base)).await;
    (fx, second, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_share_a_session_and_a_remote_controls_the_player() {
    let (fx, second, server) = two_tracks(|c| c).await;
    let mut a = open(server.addr, &[]).await.unwrap();
    let mut b = open(server.addr, &[]).await.unwrap();
    let dev_a = hello(&mut a, "home", "Speaker").await;
    let dev_b = hello(&mut b, "home", "Phone").await;
    assert_ne!(dev_a, dev_b);
    let state = next_of(&mut a, "state").await;
    assert_eq!(state["devices"].as_array().unwrap().len(), 1);
    let state = next_of(&mut a, "state").await;
    assert_eq!(state["devices"].as_array().unwrap().len(), 2, "{state}");

    send(
        &mut a,
        json!({"type":"load","tracks":[fx.id, second],"index":0}),
    )
    .await;
    for socket in [&mut a, &mut b] {
        let state = state_where(socket, |s| !s["track"].is_null()).await;
        assert_eq!(state["active_device"], dev_a.as_str());
        assert_eq!(state["track"], fx.id.as_str());
        assert_eq!(state["playing"], true);
    }
    // The remote pauses; the player sees it.
    send(&mut b, json!({"type":"pause"})).await;
    let state = next_of(&mut a, "state").await;
    assert_eq!(state["playing"], false);
    // The remote takes playback over, resuming where it was.
    send(&mut b, json!({"type":"seek","position":1.5})).await;
    send(&mut b, json!({"type":"transfer","play":true})).await;
    let state = state_where(&mut a, |s| s["active_device"] == dev_b.as_str()).await;
    assert_eq!(state["playing"], true);
    assert!(
        (state["position"].as_f64().unwrap() - 1.5).abs() < 0.5,
        "{state}"
    );
    // Reports from the device that no longer plays are refused.
    send(
        &mut a,
        json!({"type":"report","id":"r1","index":0,"position":2,"playing":true}),
    )
    .await;
    let error = next_of(&mut a, "error").await;
    assert_eq!(error["code"], "not_active");
    assert_eq!(error["in_reply_to"], "r1");
    // A device that leaves disappears from the others' state.
    drop(a);
    let state = state_where(&mut b, |s| s["devices"].as_array().unwrap().len() == 1).await;
    assert_eq!(state["devices"][0]["id"], dev_b.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_gets_a_prefetch_for_the_next_track_and_its_files_are_warm() {
    let (fx, second, server) = two_tracks(|c| c).await;
    let mut a = open(server.addr, &[]).await.unwrap();
    hello(&mut a, "p", "Speaker").await;
    let misses_before = cache_metric(&server, "segue_cache_misses_total").await;
    send(
        &mut a,
        json!({"type":"load","tracks":[fx.id, second],"index":0}),
    )
    .await;
    let prefetch = next_of(&mut a, "prefetch").await;
    assert_eq!(prefetch["track"], second.as_str());
    assert_eq!(prefetch["index"], 1);
    let hint = &prefetch["hint"];
    let mut urls = vec![hint["init"]["url"].as_str().unwrap().to_string()];
    for segment in hint["segments"].as_array().unwrap() {
        urls.push(segment["url"].as_str().unwrap().to_string());
    }
    assert!(urls.len() >= 2, "{hint}");
    // Every hinted file exists with the hinted size, and comes from the warmed cache. The hint
    // is sent while the cache warms in the background; each hinted file is read from the disk
    // once (the init segment to size it, the segments by the warm-up): wait (bounded) for that.
    let warmed = misses_before + urls.len() as f64;
    server
        .metrics_once("segue_cache_misses_total", warmed)
        .await;
    let hits_before = cache_metric(&server, "segue_cache_hits_total").await;
    for (i, url) in urls.iter().enumerate() {
        let resp = server.get(url, &[]).await;
        assert_eq!(resp.status, 200, "{url}");
        let size = if i == 0 {
            &hint["init"]["bytes"]
        } else {
            &hint["segments"][i - 1]["bytes"]
        };
        assert_eq!(resp.body.len() as u64, size.as_u64().unwrap(), "{url}");
    }
    let hits_after = cache_metric(&server, "segue_cache_hits_total").await;
    assert!(
        hits_after >= hits_before + urls.len() as f64,
        "{hits_before} -> {hits_after}"
    );
    server.stop().await;
}

async fn cache_metric(server: &Running, series: &str) -> f64 {
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    metric(&text, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_precise_errors_and_the_connection_lives_on() {
    let (fx, _, server) = two_tracks(|c| c).await;
    let mut a = open(server.addr, &[]).await.unwrap();
    send(&mut a, json!({"type":"play"})).await;
    assert_eq!(next_of(&mut a, "error").await["code"], "not_joined");
    hello(&mut a, "errors", "Tester").await;
    let cases: [(Message, &str); 7] = [
        (Message::text("{not json"), "bad_json"),
        (Message::text("[1,2,3]"), "bad_json"),
        (Message::text(r#"{"type":"dance","id":7}"#), "unknown_type"),
        (
            Message::text(r#"{"type":"seek","position":"ten"}"#),
            "bad_message",
        ),
        (
            Message::binary(vec![0xff, 0x00, 0x13]),
            "binary_not_supported",
        ),
        (
            Message::text(r#"{"type":"load","tracks":["000000000000000000000000"]}"#),
            "unknown_track",
        ),
        (
            Message::text(r#"{"type":"hello","device":{"name":"again"}}"#),
            "already_joined",
        ),
    ];
    for (message, code) in cases {
        a.send(message).await.unwrap();
        let error = next_of(&mut a, "error").await;
        assert_eq!(error["code"], code, "{error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    // Still alive: a valid command works.
    send(&mut a, json!({"type":"load","tracks":[fx.id]})).await;
    assert_eq!(next_of(&mut a, "state").await["track"], fx.id.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_and_unknown_subprotocols_are_refused_before_the_upgrade() {
    let (_, _, server) = two_tracks(|c| {
        c.with_control(&["https://app.example".into()], 15, 20)
            .unwrap()
    })
    .await;
    let own = format!("http://{}", server.addr);
    assert!(open(server.addr, &[("origin", &own)]).await.is_ok());
    assert!(
        open(server.addr, &[("origin", "https://app.example")])
            .await
            .is_ok()
    );
    assert_eq!(
        open(server.addr, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        open(server.addr, &[("sec-websocket-protocol", "chat.v2")])
            .await
            .err(),
        Some(400)
    );
    // A plain GET is told to upgrade.
    let resp = server.get("/ws", &[]).await;
    assert!(resp.status == 426 || resp.status == 400, "{}", resp.status);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_close_with_1009() {
    let (_, _, server) = two_tracks(|c| c).await;
    for size in [64 * 1024 + 1, 1 << 20] {
        let mut a = open(server.addr, &[]).await.unwrap();
        let big = format!(r#"{{"type":"hello","pad":"{}"}}"#, "x".repeat(size));
        // The server may close before the client has written it all.
        let _ = a.send(Message::text(big)).await;
        assert_eq!(close_code(&mut a).await, Some(CloseCode::Size), "{size}");
    }
    // Just under the limit is fine (and answered).
    let mut a = open(server.addr, &[]).await.unwrap();
    let pad = "x".repeat(60 * 1024);
    send(&mut a, json!({"type":"dance","pad":pad})).await;
    assert_eq!(next_of(&mut a, "error").await["code"], "unknown_type");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_without_hurting_other_connections() {
    let (fx, _, server) = two_tracks(|c| c.with_control(&[], 15, 10).unwrap()).await;
    let mut flood = open(server.addr, &[]).await.unwrap();
    hello(&mut flood, "flood", "Flooder").await;
    for _ in 0..200 {
        flood
            .send(Message::text(r#"{"type":"volume","level":0.5}"#))
            .await
            .unwrap();
    }
    let error = next_of(&mut flood, "error").await;
    assert_eq!(error["code"], "rate_limited", "{error}");
    // The error comes once the burst is spent, while the server may still be reading the rest
    // of the flood: wait (bounded) until it has counted all 200.
    let text = server
        .metrics_once("segue_control_messages_total", 200.0)
        .await;
    assert!(metric(&text, r#"segue_control_errors_total{code="rate_limited"}"#) >= 1.0);
    assert!(
        metric(&text, "segue_control_messages_total") >= 200.0,
        "{text}"
    );
    assert_eq!(metric(&text, "segue_control_connections"), 1.0);
    let mut calm = open(server.addr, &[]).await.unwrap();
    hello(&mut calm, "calm", "Calm").await;
    next_of(&mut calm, "state").await;
    send(&mut calm, json!({"type":"load","tracks":[fx.id]})).await;
    assert_eq!(next_of(&mut calm, "state").await["playing"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_pings_is_dropped() {
    let (_, _, server) = two_tracks(|c| c.with_control(&[], 1, 20).unwrap()).await;
    // A raw TCP client that completes the handshake by hand and then never reads or answers.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    // Read (and ignore) pings until the server hangs up: it must within a few heartbeats.
    let mut buf = [0u8; 1024];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the silent peer was never dropped");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "dropped before any heartbeat"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_ingested_while_serving_are_announced() {
    let (fx, _, server) = two_tracks(|c| c).await;
    let mut a = open(server.addr, &[]).await.unwrap();
    hello(&mut a, "lib", "Watcher").await;
    // No wait here: the server knows what the catalog held before it accepted this socket, so
    // a track ingested from now on is announced.
    let new_id = tokio::task::block_in_place(|| ingest(&fx.lib, "late.wav", 1.0));
    let library = next_of(&mut a, "library").await;
    let added = library["added"].as_array().unwrap();
    assert_eq!(added.len(), 1, "{library}");
    assert_eq!(added[0]["id"], new_id.as_str());
    assert!(added[0]["hls"].as_str().unwrap().ends_with(".m3u8"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_going_away_and_serve_returns() {
    let (_, _, mut server) = two_tracks(|c| c).await;
    let mut a = open(server.addr, &[]).await.unwrap();
    hello(&mut a, "bye", "Leaving").await;
    server.signal_shutdown();
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Away));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_signed_urls_the_socket_needs_the_token_the_api_gives() {
    let (_, _, server) =
        two_tracks(|c| c.with_signing("0123456789abcdef0123", 3600).unwrap()).await;
    assert_eq!(open(server.addr, &[]).await.err(), Some(403));
    let control = server.get("/api/control", &[]).await;
    let control: Value = serde_json::from_slice(&control.body).unwrap();
    let path = control["ws"].as_str().unwrap();
    assert!(path.starts_with("/t/") && path.ends_with("/ws"), "{path}");
    let mut socket = open_path(server.addr, path, &[]).await.unwrap();
    hello(&mut socket, "signed", "Signed").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_holds_up_nobody() {
    let (fx, second, server) = two_tracks(|c| c.with_control(&[], 15, 1000).unwrap()).await;
    // The stalled client: a tiny receive buffer, joined, then never read again.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(server.addr).await.unwrap();
    let mut request = format!("ws://{}/ws", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "segue.control.v1".parse().unwrap(),
    );
    let (mut stalled, _) = client_async(request, tcp).await.unwrap();
    hello(&mut stalled, "busy", "Stalled").await;
    // A busy remote in the same session makes the server broadcast state after state.
    let mut busy = open(server.addr, &[]).await.unwrap();
    hello(&mut busy, "busy", "Busy").await;
    // A long queue makes each state message large (about 27 KB).
    let mut queue = vec![fx.id.clone(); 999];
    queue.push(second);
    send(&mut busy, json!({"type":"load","tracks":queue})).await;
    let started = tokio::time::Instant::now();
    let mut dropped = false;
    for round in 0..1000 {
        let level = f64::from(round % 100) / 100.0;
        send(&mut busy, json!({"type":"volume","level":level})).await;
        // The busy device keeps getting its own state back at once.
        let state = state_where(&mut busy, |s| {
            (s["volume"].as_f64().unwrap() - level).abs() < 1e-9
        })
        .await;
        if state["devices"].as_array().unwrap().len() == 1 {
            eprintln!(
                "stalled client dropped after {round} broadcasts, {:?}",
                started.elapsed()
            );
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "the stalled client was still in the session after 1000 broadcasts"
    );
    assert!(
        started.elapsed() < WAIT,
        "broadcasts were held up: {:?}",
        started.elapsed()
    );
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    assert_eq!(metric(&text, "segue_control_connections"), 1.0, "{text}");
    // What the stalled client finally reads ends with the close (1008) or a cut connection.
    let code = close_code(&mut stalled).await;
    assert!(
        code.is_none() || code == Some(CloseCode::Policy),
        "{code:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_commands_is_answered_in_full_however_short_the_send_queue() {
    // The queue holds 1 KB, about four of these states: a burst of 200 commands sent without
    // reading must still be answered one state each, as the server writes each reply before
    // it reads on.
    let (_, _, server) = two_tracks(|c| {
        let mut c = c.with_control(&[], 15, 1000).unwrap();
        c.control.send_queue_bytes = 1024;
        c
    })
    .await;
    let mut a = open(server.addr, &[]).await.unwrap();
    hello(&mut a, "burst", "Burst").await;
    next_of(&mut a, "state").await;
    const COMMANDS: u32 = 200;
    for i in 1..=COMMANDS {
        let level = f64::from(i) / f64::from(COMMANDS);
        let text = json!({"type":"volume","level":level}).to_string();
        a.send(Message::text(text)).await.unwrap();
    }
    let mut seen = 0;
    let last = loop {
        let state = next_of(&mut a, "state").await;
        seen += 1;
        if state["volume"] == 1.0 {
            break state;
        }
    };
    assert!(seen >= COMMANDS, "{seen} states for {COMMANDS} commands");
    let text = String::from_utf8(server.get("/metrics", &[]).await.body).unwrap();
    assert_eq!(metric(&text, "segue_control_connections"), 1.0, "{text}");
    assert!(
        last["revision"].as_u64() >= Some(u64::from(COMMANDS)),
        "{last}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_gets_the_close_reply() {
    let (_, _, server) = two_tracks(|c| c).await;
    let mut a = open(server.addr, &[]).await.unwrap();
    hello(&mut a, "close", "Closer").await;
    a.close(None).await.unwrap();
    // The server answers with its own Close frame (a clean close, not a dropped socket).
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(reply, "no Close reply from the server");
    server.stop().await;
}
