//! The WebSocket control channel (`GET /ws`, protocol `segue.control.v1`, documented in
//! `docs/control-protocol.md`): play, pause, seek and queue commands, sessions shared by several
//! devices, and server events (state, prefetch, library).
//!
//! Media never travels here: a socket cannot be cached, so it only carries small control
//! messages while segments stay plain, immutable HTTP objects.
//!
//! - [`upgrade`] checks the Origin and the subprotocol before accepting the upgrade;
//! - [`connection`] runs one socket: parsing ([`protocol`]), rate limit, heartbeat, send queue;
//! - [`session`] is the shared playback state, a pure state machine;
//! - [`ControlHub`] (here) keeps the sessions and every connection, for broadcasts;
//! - [`library`] watches the catalog and announces tracks added while the server runs.

pub mod connection;
pub mod echo;
pub mod library;
pub mod peer;
pub mod protocol;
pub mod session;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

pub use crate::config::ControlConfig;

use super::AppState;
use super::error::ApiError;
use peer::Peer;
use protocol::{DeviceInfo, MAX_MESSAGE_BYTES, PROTOCOL, ServerMessage};
use session::{Member, Session};

/// A session shared between the hub and its connections.
pub type SharedSession = Arc<Mutex<Session>>;

/// Every session and connection of the control channel.
#[derive(Debug)]
pub struct ControlHub {
    config: ControlConfig,
    sessions: Mutex<HashMap<String, SharedSession>>,
    peers: Mutex<HashMap<u64, Peer>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

/// Locks `mutex`; the data behind these locks is only changed in short, non-panicking steps,
/// so a poisoned lock still holds consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ControlHub {
    /// A hub with no session.
    pub fn new(config: ControlConfig) -> Self {
        ControlHub {
            config,
            sessions: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    /// A new connection's peer handle (registered for broadcasts) and inbox.
    pub fn connect(&self) -> (Peer, peer::PeerInbox) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (peer, inbox) = Peer::new(id, self.config.send_queue);
        lock(&self.peers).insert(id, peer.clone());
        (peer, inbox)
    }

    /// Forgets a connection, and its device if it had joined a session.
    pub fn disconnect(&self, peer: &Peer, joined: Option<(&SharedSession, &str)>) {
        lock(&self.peers).remove(&peer.id());
        if let Some((session, device)) = joined {
            let now = Instant::now();
            let mut s = lock(session);
            if s.leave(device, now) {
                broadcast_state(&s, now);
            }
            if s.members().is_empty() {
                let id = s.id().to_string();
                drop(s);
                let mut sessions = lock(&self.sessions);
                // Only drop it if nobody joined in between.
                if sessions
                    .get(&id)
                    .is_some_and(|s| lock(s).members().is_empty())
                {
                    sessions.remove(&id);
                }
            }
        }
    }

    /// Joins `peer` as device `name` to session `id` (a new random one when `None`), and
    /// broadcasts the new device list. Returns the session and the device id.
    pub fn join(&self, id: Option<String>, name: &str, peer: Peer) -> (SharedSession, String) {
        let id = id.unwrap_or_else(random_id);
        let device = format!("d{}", peer.id());
        let now = Instant::now();
        let session = Arc::clone(
            lock(&self.sessions)
                .entry(id.clone())
                .or_insert_with(|| Arc::new(Mutex::new(Session::new(id, now)))),
        );
        let mut s = lock(&session);
        s.join(Member {
            info: DeviceInfo {
                id: device.clone(),
                name: name.trim().to_string(),
            },
            peer,
        });
        drop(s);
        (session, device)
    }

    /// Sends `message` to every connection.
    pub fn broadcast_all(&self, message: &ServerMessage) {
        let text = Utf8Bytes::from(message.to_json());
        for peer in lock(&self.peers).values() {
            peer.send(text.clone());
        }
    }

    /// Asks every connection to close (1001) and refuses new ones.
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves when [`ControlHub::shut_down`] is called.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Sends the session's state to each of its devices.
pub fn broadcast_state(session: &Session, now: Instant) {
    let text = Utf8Bytes::from(ServerMessage::State(session.snapshot(now)).to_json());
    for member in session.members() {
        member.peer.send(text.clone());
    }
}

/// 16 random bytes from the OS as hex: session ids are capabilities (knowing one lets you
/// control its playback), so they must not be guessable. Falls back to a hash of the clock
/// and a counter if /dev/urandom is unreadable (never on Linux in practice).
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = format!(
            "{:?}{}",
            std::time::SystemTime::now(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a browser's `Origin` may open the channel: the server's own origin (same
/// authority as `Host`), or one the operator allowed.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// `GET /ws`: checks Origin and subprotocol, then hands the socket to [`connection::run`].
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let hub = Arc::clone(state.control());
    if *hub.shutdown.borrow() {
        return ApiError::Unavailable("shutting down".into()).into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let ok = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(o, host, &hub.config.allowed_origins));
        if !ok {
            return ApiError::Forbidden("this Origin may not open the control channel".into())
                .into_response();
        }
    }
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !offered.is_empty() && !offered.contains(&PROTOCOL) {
        return ApiError::BadRequest(format!(
            "unsupported subprotocol: this server speaks {PROTOCOL}"
        ))
        .into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection::run(state, hub, socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_against_the_host_and_the_allow_list() {
        let host = Some("127.0.0.1:8080");
        assert!(origin_allowed("http://127.0.0.1:8080", host, &[]));
        assert!(origin_allowed("https://127.0.0.1:8080", host, &[]));
        assert!(!origin_allowed("http://evil.example", host, &[]));
        assert!(!origin_allowed("http://127.0.0.1:8081", host, &[]));
        assert!(!origin_allowed("null", host, &[]));
        assert!(!origin_allowed("http://127.0.0.1:8080", None, &[]));
        let allowed = vec!["https://app.example".to_string()];
        assert!(origin_allowed("https://app.example", host, &allowed));
        assert!(origin_allowed("http://x.example", host, &["*".into()]));
    }

    #[test]
    fn session_ids_are_random_hex() {
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(protocol::valid_session_id(&a));
    }
}
