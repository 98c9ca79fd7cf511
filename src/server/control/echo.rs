//! `GET /ws/echo` (only with `--ws-conformance-echo`): a WebSocket echo endpoint on the same
//! stack and settings as the control channel, so the Autobahn test cases (which expect an echo
//! server) can check the server's WebSocket implementation: framing, fragmentation, UTF-8
//! validation, close handshake, ping/pong. Off by default: it carries no control messages.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};

/// Largest echoed message: Autobahn's case 9 sends up to 16 MiB.
pub const MAX_ECHO_BYTES: usize = 16 << 20;

/// `GET /ws/echo`.
pub async fn upgrade(upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    match upgrade {
        Ok(upgrade) => upgrade
            .max_message_size(MAX_ECHO_BYTES)
            .max_frame_size(MAX_ECHO_BYTES)
            .on_upgrade(echo),
        Err(rejection) => rejection.into_response(),
    }
}

/// Sends every data message back until the peer closes or breaks the protocol.
async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            // Pongs to pings are sent by the WebSocket layer itself.
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => break,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}
