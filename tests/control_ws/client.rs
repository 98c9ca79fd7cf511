//! The control-channel tests' WebSocket client: tokio-tungstenite (an independent WebSocket
//! implementation) speaking segue.control.v1 to `serve` on 127.0.0.1:0, every wait bounded.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{WebSocketStream, client_async};

/// Longest wait for any one expected message.
pub const WAIT: Duration = Duration::from_secs(10);

/// A client connection to `/ws`.
pub type Socket = WebSocketStream<TcpStream>;

/// Opens `/ws` with `headers` (subprotocol segue.control.v1 unless given); the HTTP status of
/// a refused upgrade is the error.
pub async fn open(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    open_path(addr, "/ws", headers).await
}

/// [`open`] at another path (a signed `/t/TOKEN/ws`).
pub async fn open_path(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, u16> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !headers.iter().any(|(k, _)| *k == "sec-websocket-protocol") {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "segue.control.v1".parse().unwrap(),
        );
    }
    for &(k, v) in headers {
        let name = axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        request.headers_mut().insert(name, v.parse().unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    match tokio::time::timeout(WAIT, client_async(request, tcp)).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        other => panic!("handshake: {other:?}"),
    }
}

/// Sends `message` as a text frame.
pub async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next JSON message of type `kind`, skipping others (and pings).
pub async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == kind {
                        return value;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended waiting for {kind}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} message in {WAIT:?}"))
}

/// The next `state` for which `wanted` holds.
pub async fn state_where(socket: &mut Socket, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let state = next_of(socket, "state").await;
        if wanted(&state) {
            return state;
        }
    }
}

/// The close code the server ends the connection with.
pub async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    };
    tokio::time::timeout(WAIT * 2, wait)
        .await
        .expect("the server closes the connection")
}

/// Joins `session` as `name`; returns the device id.
pub async fn hello(socket: &mut Socket, session: &str, name: &str) -> String {
    send(
        socket,
        json!({"type":"hello","device":{"name":name},"session":session}),
    )
    .await;
    let welcome = next_of(socket, "welcome").await;
    assert_eq!(welcome["protocol"], "segue.control.v1");
    assert_eq!(welcome["session"], session);
    welcome["device"].as_str().unwrap().to_string()
}
