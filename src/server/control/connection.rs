//! One control-channel connection: reads commands, writes the peer's queued messages, pings.
//!
//! A single task per socket selects over: server shutdown (close 1001), an overflow of the
//! send queue (close 1008: the client does not read), the next queued message (written with a
//! deadline, so a stalled socket is dropped rather than waited on), the heartbeat (ping; a peer
//! silent for three heartbeats is dropped) and the next frame from the client. A frame over the
//! size limit closes with 1009; everything else that is wrong with a message is answered with an
//! `error` and the connection lives on. Commands pass a token bucket first.
//!
//! The queue is the client's to drain, not the server's to neglect: queued messages are written
//! before the next frame is read, and go on being written while a command waits (on Redis, say).
//! Otherwise a client that sends a burst of commands to a busy session would see its own
//! replies and the other devices' changes pile up unwritten and be dropped as a non-reader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use serde_json::Value;

use super::ControlHub;
use super::peer::{Peer, PeerInbox};
use super::protocol::{
    self, ClientMessage, Limits, MAX_MESSAGE_BYTES, PROTOCOL, ProtocolError, ServerMessage,
};
use super::session::Stamp;
use super::session::{Command, PrefetchNeed, QueueEntry};
use crate::server::AppState;
use crate::server::prefetch;
use crate::server::view::{DEFAULT_SECONDS, HintRequest};

/// Heartbeats a peer may stay silent before it is dropped.
const SILENT_HEARTBEATS: u32 = 3;
/// Shortest time between two `rate_limited` errors to one connection.
const RATE_ERROR_INTERVAL: Duration = Duration::from_secs(1);
/// How long the final close frame may take to go out.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        TokenBucket {
            tokens: rate * 2.0,
            rate,
            burst: rate * 2.0,
            last: now,
        }
    }

    /// Takes a token if there is one.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The state of one connection.
struct Connection {
    state: AppState,
    hub: Arc<ControlHub>,
    peer: Peer,
    /// (session id, device id) once joined.
    joined: Option<(String, String)>,
    bucket: TokenBucket,
    last_rate_error: Option<Instant>,
}

/// Runs the connection until either side closes it, then leaves its session.
pub async fn run(state: AppState, hub: Arc<ControlHub>, mut socket: WebSocket) {
    let (peer, mut inbox) = hub.connect();
    let metrics = Arc::clone(state.metrics());
    metrics.control_connection(1);
    let rate = hub.config().commands_per_second;
    let mut connection = Connection {
        state,
        hub: Arc::clone(&hub),
        peer: peer.clone(),
        joined: None,
        bucket: TokenBucket::new(rate, Instant::now()),
        last_rate_error: None,
    };
    let close = connection.drive(&mut socket, &mut inbox).await;
    let joined = connection.joined.take();
    hub.disconnect(
        &peer,
        joined.as_ref().map(|(s, d)| (s.as_str(), d.as_str())),
    )
    .await;
    metrics.control_connection(-1);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ =
            tokio::time::timeout(CLOSE_DEADLINE, socket.send(Message::Close(Some(frame)))).await;
    }
}

/// Whether a receive error is the size limit (tungstenite's capacity error).
fn is_too_big(error: axum::Error) -> bool {
    let inner = error.into_inner();
    matches!(
        inner.downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

impl Connection {
    /// The connection's loop; returns the close frame to send, if any.
    async fn drive(&mut self, socket: &mut WebSocket, inbox: &mut PeerInbox) -> Ending {
        let heartbeat = self.hub.config().heartbeat;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let mut last_seen = Instant::now();
        let mut shutdown = self.hub.shutdown_signal();
        let overflow = Arc::clone(&inbox.overflow);
        if *shutdown.borrow_and_update() {
            return Some((close_code::AWAY, "server shutting down"));
        }
        loop {
            tokio::select! {
                // In this order: what is queued goes out before the next frame is read.
                biased;
                changed = shutdown.changed() => {
                    let down = changed.is_err() || *shutdown.borrow_and_update();
                    if down {
                        return Some((close_code::AWAY, "server shutting down"));
                    }
                }
                () = overflow.notified() => return not_reading(self.peer.id()),
                Some(text) = inbox.recv() => {
                    if let Err(close) = deliver(socket, inbox, text, heartbeat, self.peer.id()).await {
                        return close;
                    }
                }
                _ = ticker.tick() => {
                    if last_seen.elapsed() > heartbeat * SILENT_HEARTBEATS {
                        tracing::info!(peer = self.peer.id(), "control: dropping a silent peer");
                        return None;
                    }
                    if !write(socket, Message::Ping(Default::default()), heartbeat).await {
                        return None;
                    }
                }
                frame = socket.recv() => {
                    let message = match frame {
                        None => return None,
                        Some(Err(e)) => {
                            return is_too_big(e).then_some((close_code::SIZE, "message too big"));
                        }
                        Some(Ok(message)) => message,
                    };
                    last_seen = Instant::now();
                    if matches!(message, Message::Text(_) | Message::Binary(_)) {
                        self.state.metrics().control_message();
                    }
                    match message {
                        Message::Text(text) => {
                            let peer = self.peer.id();
                            let command = self.on_text(&text);
                            if let Err(close) = drain_while(socket, inbox, heartbeat, peer, command).await {
                                return close;
                            }
                        }
                        Message::Binary(_) => self.on_binary(),
                        Message::Ping(_) | Message::Pong(_) => {}
                        Message::Close(_) => {
                            // tungstenite has queued the Close reply; it goes out on the next
                            // read, which then ends the stream (RFC 6455 5.5.1: a clean close).
                            let _ = tokio::time::timeout(CLOSE_DEADLINE, socket.recv()).await;
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Queues a message to this connection.
    fn reply(&self, message: &ServerMessage) {
        self.peer.send(Utf8Bytes::from(message.to_json()));
    }

    fn reply_error(&self, error: ProtocolError, in_reply_to: Option<Value>) {
        self.state.metrics().control_error(error.code);
        self.reply(&ServerMessage::error(error, in_reply_to));
    }

    /// Takes a token; when there is none, answers `rate_limited` (at most once a second).
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        if self.bucket.take(now) {
            return true;
        }
        let quiet = self
            .last_rate_error
            .is_none_or(|t| now.duration_since(t) >= RATE_ERROR_INTERVAL);
        if quiet {
            self.last_rate_error = Some(now);
            let rate = self.hub.config().commands_per_second;
            self.reply_error(
                ProtocolError::new(
                    "rate_limited",
                    format!("too many messages: at most {rate} a second; some were dropped"),
                ),
                None,
            );
        }
        false
    }

    fn on_binary(&mut self) {
        if self.admit() {
            self.reply_error(
                ProtocolError::new(
                    "binary_not_supported",
                    "binary frames are not part of the protocol: send JSON text",
                ),
                None,
            );
        }
    }

    async fn on_text(&mut self, text: &str) {
        if !self.admit() {
            return;
        }
        let (message, id) = match protocol::parse(text) {
            Ok(parsed) => parsed,
            Err((error, id)) => return self.reply_error(error, id),
        };
        if let Err(error) = self.dispatch(message).await {
            self.reply_error(error, id);
        }
    }

    async fn dispatch(&mut self, message: ClientMessage) -> Result<(), ProtocolError> {
        if let ClientMessage::Hello { device, session } = message {
            return self.hello(&device.name, session).await;
        }
        let Some((session, device)) = self.joined.clone() else {
            return Err(ProtocolError::new(
                "not_joined",
                "send hello before any other message",
            ));
        };
        let command = self.resolve(message).await?;
        let applied = self
            .hub
            .table()
            .update(&session, false, None, |s| {
                s.apply(&device, command.clone(), Stamp::now()).map(drop)
            })
            .await?;
        if let Some(need) = applied.prefetch {
            tokio::spawn(deliver_prefetch(self.state.clone(), session, need));
        }
        Ok(())
    }

    async fn hello(&mut self, name: &str, session: Option<String>) -> Result<(), ProtocolError> {
        if self.joined.is_some() {
            return Err(ProtocolError::new(
                "already_joined",
                "hello: this connection has joined a session already",
            ));
        }
        let (id, device) = self.hub.join(session, name, self.peer.clone()).await?;
        let config = self.hub.config();
        // The join's own state broadcast may have gone out before this welcome: the client
        // gets the state again right after it, so its first `state` follows its `welcome`.
        self.reply(&ServerMessage::Welcome {
            protocol: PROTOCOL,
            session: id.clone(),
            device: device.clone(),
            heartbeat: config.heartbeat.as_secs().max(1),
            limits: Limits {
                max_message_bytes: MAX_MESSAGE_BYTES,
                commands_per_second: config.commands_per_second,
            },
        });
        self.hub.table().send_state(&id, &device);
        self.joined = Some((id, device));
        Ok(())
    }

    /// Turns a parsed message into a session command, looking tracks up in the catalog.
    async fn resolve(&self, message: ClientMessage) -> Result<Command, ProtocolError> {
        Ok(match message {
            // dispatch() takes hello before it gets here.
            ClientMessage::Hello { .. } => {
                return Err(ProtocolError::new(
                    "already_joined",
                    "hello: joined already",
                ));
            }
            ClientMessage::Load {
                tracks,
                index,
                position,
                play,
            } => Command::Load {
                queue: self.queue_of(tracks).await?,
                index,
                position,
                play,
            },
            ClientMessage::Play => Command::Play,
            ClientMessage::Pause => Command::Pause,
            ClientMessage::Seek { position } => Command::Seek(position),
            ClientMessage::Next => Command::Next,
            ClientMessage::Previous => Command::Previous,
            ClientMessage::Jump { index } => Command::Jump(index),
            ClientMessage::Volume { level } => Command::Volume(level),
            ClientMessage::Transfer { device, play } => Command::Transfer { device, play },
            ClientMessage::Report {
                index,
                position,
                playing,
                bandwidth,
                ..
            } => Command::Report {
                index,
                position,
                playing,
                bandwidth,
            },
        })
    }

    /// The queue entries of `tracks`, or `unknown_track` naming the first missing one.
    async fn queue_of(&self, tracks: Vec<String>) -> Result<Vec<QueueEntry>, ProtocolError> {
        let found = self
            .state
            .with_catalog(move |catalog| {
                let mut queue = Vec::with_capacity(tracks.len());
                for track in tracks {
                    match catalog.get(&track)? {
                        Some(record) => queue.push(QueueEntry {
                            track,
                            duration: record.duration_seconds(),
                        }),
                        None => return Ok(Err(track)),
                    }
                }
                Ok(Ok(queue))
            })
            .await
            .map_err(|_| ProtocolError::new("internal", "the catalog could not be read"))?;
        found.map_err(|track| {
            ProtocolError::new(
                "unknown_track",
                format!("load: no track {track} in the library"),
            )
        })
    }
}

/// Makes the hint for the next track, warms the cache with it and sends it to the active
/// device (`need.device` of `session`, when it is on this origin).
pub async fn deliver_prefetch(state: AppState, session: String, need: PrefetchNeed) {
    let request = HintRequest {
        bandwidth: need.bandwidth,
        from: 0.0,
        seconds: DEFAULT_SECONDS,
        rendition: None,
    };
    let hint = match prefetch::hints(&state, vec![need.track.clone()], request).await {
        Ok(hints) => hints.into_iter().next(),
        Err(e) => {
            tracing::debug!(track = %need.track, error = %e, "control: no prefetch hint for the next track");
            return;
        }
    };
    let Some(hint) = hint else {
        return;
    };
    let message = ServerMessage::Prefetch {
        track: need.track,
        index: need.index,
        reason: "next",
        hint,
    };
    if let Some(peer) = state.control().table().peer(&session, &need.device) {
        peer.send(Utf8Bytes::from(message.to_json()));
    }
}

/// Why a connection ends: the close frame to send, if any.
type Ending = Option<(u16, &'static str)>;

/// Writes one queued message. A socket that does not drain blocks the write; the queue
/// meanwhile overflows, which ends the wait at once rather than at the deadline.
async fn deliver(
    socket: &mut WebSocket,
    inbox: &mut PeerInbox,
    text: Utf8Bytes,
    deadline: Duration,
    peer: u64,
) -> Result<(), Ending> {
    tokio::select! {
        written = write(socket, Message::Text(text), deadline) => {
            if written { Ok(()) } else { Err(None) }
        }
        () = inbox.overflow.notified() => Err(not_reading(peer)),
    }
}

/// The end of a connection whose send queue overflowed.
fn not_reading(peer: u64) -> Ending {
    tracing::info!(peer, "control: closing a client that does not read");
    Some((close_code::POLICY, "send queue full"))
}

/// Runs `command` to its end while writing what is queued meanwhile. When the socket fails
/// or the queue overflows, the command still runs to its end (it may be halfway through a
/// write to Redis), and then the connection ends.
async fn drain_while(
    socket: &mut WebSocket,
    inbox: &mut PeerInbox,
    deadline: Duration,
    peer: u64,
    command: impl Future<Output = ()>,
) -> Result<(), Ending> {
    tokio::pin!(command);
    loop {
        tokio::select! {
            biased;
            () = &mut command => return Ok(()),
            Some(text) = inbox.recv() => {
                if let Err(close) = deliver(socket, inbox, text, deadline, peer).await {
                    command.await;
                    return Err(close);
                }
            }
        }
    }
}

/// Writes one message with a deadline; `false` when the socket is gone or stalled.
async fn write(socket: &mut WebSocket, message: Message, deadline: Duration) -> bool {
    matches!(
        tokio::time::timeout(deadline, socket.send(message)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        let burst = (0..100).take_while(|_| bucket.take(start)).count();
        assert_eq!(burst, 20);
        assert!(!bucket.take(start));
        let later = start + Duration::from_millis(500);
        let refilled = (0..100).take_while(|_| bucket.take(later)).count();
        assert_eq!(refilled, 5);
    }
}
