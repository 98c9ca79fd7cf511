//! `GET /ws/echo` (only with `--ws-conformance-echo`): a WebSocket echo endpoint on the same
//! stack and settings as the control channel, so the Autobahn test cases (which expect an echo
//! server) can check the server's WebSocket implementation: framing, fragmentation, UTF-8
//! validation, close handshake, ping/pong. Off by default: it carries no control messages.
//!
//! Closing follows RFC 6455 5.5.1 and 7.1: tungstenite queues the reply to a peer's Close frame
//! and writes it on the next read, so after a Close the loop reads on (the read then ends the
//! stream) instead of dropping the socket with the reply unsent. A frame that breaks the
//! protocol fails the connection with a Close frame carrying the matching status code (7.1.7,
//! 7.4.1: 1002 protocol error, 1007 invalid UTF-8, 1009 too big) before the TCP connection ends.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::{IntoResponse, Response};

/// Largest echoed message: Autobahn's case 9 sends up to 16 MiB.
pub const MAX_ECHO_BYTES: usize = 16 << 20;

/// How long the Close frame that fails a connection may take to go out.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

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

/// Sends every data message back until the close handshake ends or the peer breaks the protocol.
async fn echo(mut socket: WebSocket) {
    while let Some(frame) = socket.recv().await {
        let reply = match frame {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            // Pongs to pings and the reply to a Close are queued by tungstenite and written by
            // the next read; that read ends the stream once the close handshake is done.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_)) => continue,
            Err(error) => {
                if let Some((code, reason)) = failure_close(error) {
                    let frame = CloseFrame {
                        code,
                        reason: Utf8Bytes::from_static(reason),
                    };
                    let close = socket.send(Message::Close(Some(frame)));
                    let _ = tokio::time::timeout(CLOSE_DEADLINE, close).await;
                }
                return;
            }
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

/// The Close status code and reason that fail a connection after a receive `error` (RFC 6455
/// 7.4.1), or `None` when the connection itself is gone and nothing can be sent.
fn failure_close(error: axum::Error) -> Option<(u16, &'static str)> {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Protocol(_) => Some((close_code::PROTOCOL, "protocol error")),
        tungstenite::Error::Utf8(_) => Some((close_code::INVALID, "invalid UTF-8")),
        tungstenite::Error::Capacity(_) => Some((close_code::SIZE, "message too big")),
        _ => None,
    }
}
