//! The WebSocket control channel (`GET /ws`, protocol `segue.control.v1`, documented in
//! `docs/control-protocol.md`): play, pause, seek and queue commands, sessions shared by several
//! devices, and server events (state, prefetch, library).
//!
//! Media never travels here: a socket cannot be cached, so it only carries small control
//! messages while segments stay plain, immutable HTTP objects.
//!
//! - [`upgrade`] checks the Origin and the subprotocol before accepting the upgrade;
//! - [`connection`] runs one socket: parsing ([`protocol`]), rate limit, heartbeat, send queue;
//! - [`session`] is the shared playback state, a pure state machine (times as [`stamp`]s);
//! - [`table`] keeps the sessions: in this process, or shared by a fleet of origins through
//!   Redis ([`bus`], values sealed by [`wire`]) with `--bus`;
//! - [`ControlHub`] (here) holds the table and every connection, for broadcasts, and runs the
//!   bus's listener and heartbeat ([`run_bus`]);
//! - [`library`] watches the catalog and announces tracks added while the server runs.

pub mod bus;
pub mod connection;
pub mod echo;
pub mod library;
pub mod peer;
pub mod protocol;
pub mod session;
pub mod stamp;
pub mod table;
pub mod wire;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use redis::PushInfo;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Notify, watch};

pub use crate::config::ControlConfig;

use super::AppState;
use super::error::ApiError;
use crate::server::metrics::Metrics;
use bus::{Push, RedisBus};
use peer::Peer;
use protocol::{MAX_MESSAGE_BYTES, PROTOCOL, ProtocolError, ServerMessage};
use table::SessionTable;
use wire::{Notice, Sealer};

/// Every session and connection of the control channel.
#[derive(Debug)]
pub struct ControlHub {
    config: ControlConfig,
    /// The sessions (the bus is attached by [`run_bus`], inside the runtime).
    table: OnceLock<SessionTable>,
    metrics: Arc<Metrics>,
    origin: String,
    peers: Mutex<HashMap<u64, Peer>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Notified when another origin found new tracks: rescan now.
    library_news: Notify,
}

/// Locks `mutex`; the data behind these locks is only changed in short, non-panicking steps,
/// so a poisoned lock still holds consistent data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ControlHub {
    /// A hub with no session; `metrics` counts the bus's events.
    pub fn new(config: ControlConfig, metrics: Arc<Metrics>) -> Self {
        ControlHub {
            config,
            table: OnceLock::new(),
            metrics,
            // Random: origins of a fleet must not collide, and a restarted origin is a new one.
            origin: format!("o{}", &random_id()[..16]),
            peers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            shutdown: watch::Sender::new(false),
            library_news: Notify::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    /// The sessions; in-process until [`run_bus`] attached a bus.
    pub fn table(&self) -> &SessionTable {
        self.table.get_or_init(|| {
            SessionTable::new(
                self.origin.clone(),
                None,
                self.config.session_ttl,
                self.config.heartbeat,
                Arc::clone(&self.metrics),
            )
        })
    }

    /// `/healthz`'s line about the bus (`None`: no bus configured).
    pub fn bus_health(&self) -> Option<String> {
        self.config.bus.as_ref()?;
        Some(
            self.table
                .get()
                .and_then(SessionTable::health)
                .unwrap_or_else(|| "local (redis not connected yet)".into()),
        )
    }

    /// Resolves when another origin announced library news.
    pub async fn library_news(&self) {
        self.library_news.notified().await;
    }

    /// Tells the other origins of the fleet that this one found new tracks.
    pub async fn announce_library(&self) {
        if let Some(bus) = self.table().bus()
            && let Err(e) = bus.publish_library().await
        {
            tracing::debug!(error = %e, "bus: library news not published");
        }
    }

    /// A new connection's peer handle (registered for broadcasts) and inbox.
    pub fn connect(&self) -> (Peer, peer::PeerInbox) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (peer, inbox) = Peer::new(id, self.config.send_queue_bytes);
        lock(&self.peers).insert(id, peer.clone());
        (peer, inbox)
    }

    /// Forgets a connection, and its device if it had joined a session (`(session, device)`).
    pub async fn disconnect(&self, peer: &Peer, joined: Option<(&str, &str)>) {
        lock(&self.peers).remove(&peer.id());
        if let Some((session, device)) = joined {
            self.table().leave(session, device).await;
        }
    }

    /// Joins `peer` as device `name` to session `id` (a new random one when `None`). Returns
    /// the session id and the device id.
    pub async fn join(
        &self,
        id: Option<String>,
        name: &str,
        peer: Peer,
    ) -> Result<(String, String), ProtocolError> {
        let id = id.unwrap_or_else(random_id);
        let device = self.table().join(&id, name.trim(), peer).await?;
        Ok((id, device))
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

/// The bus attached by [`attach_bus`]: its handle and the receiver of its pushes.
pub type AttachedBus = (RedisBus, UnboundedReceiver<PushInfo>);

/// Attaches the bus of `config.bus` (if any) to `hub`'s table, before the server accepts its
/// first connection (so no session starts in-process by mistake). Must be called inside the
/// runtime (the connection is made lazily, on it); `None` without a bus, or with a URL the
/// client refuses (logged: sessions then stay local).
pub fn attach_bus(hub: &ControlHub) -> Option<AttachedBus> {
    let url = hub.config.bus.clone()?;
    if hub.config.bus_key.is_none() {
        tracing::warn!(
            "bus: SEGUE_BUS_KEY is not set: bus messages are checked for corruption, not authenticated"
        );
    }
    let made = RedisBus::new(
        &url,
        Sealer::new(hub.config.bus_key.clone()),
        hub.origin.clone(),
        hub.config.bus_prefix.clone(),
        hub.config.session_ttl,
        hub.config.heartbeat,
    );
    let (bus, pushes) = match made {
        Ok(made) => made,
        Err(e) => {
            tracing::error!(error = %e, "bus: cannot use {url}; control sessions stay local");
            return None;
        }
    };
    let table = SessionTable::new(
        hub.origin.clone(),
        Some(bus.clone()),
        hub.config.session_ttl,
        hub.config.heartbeat,
        Arc::clone(&hub.metrics),
    );
    if hub.table.set(table).is_err() {
        tracing::error!("bus: sessions were in use before the bus was attached; it is not used");
        return None;
    }
    Some((bus, pushes))
}

/// Runs the bus's listener and heartbeat (or, without a bus, the in-process sweep) until the
/// hub shuts down; `deliver` sends a prefetch hint that another origin's change called for to
/// a device here.
pub async fn run_bus<D, F>(hub: Arc<ControlHub>, attached: Option<AttachedBus>, deliver: D)
where
    D: Fn(String, session::PrefetchNeed) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let heartbeat = hub.config.heartbeat;
    let Some((bus, mut pushes)) = attached else {
        // In-process sessions: the sweep only forgets parked sessions past their TTL.
        let mut shutdown = hub.shutdown_signal();
        let mut ticker = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow_and_update() {
                        return;
                    }
                }
                _ = ticker.tick() => hub.table().sweep().await,
            }
        }
    };
    let table = hub.table();
    match bus.subscribe().await {
        Ok(()) => tracing::info!(
            origin = bus.origin(),
            "bus: control sessions shared through Redis"
        ),
        Err(e) => table.degrade_now(&e),
    }
    let mut shutdown = hub.shutdown_signal();
    // A sweep every half heartbeat: a dead origin's liveness key lasts three heartbeats, so
    // its devices are gone from every session within the heartbeat window.
    let mut ticker = tokio::time::interval(heartbeat / 2);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow_and_update() {
                    return;
                }
            }
            _ = ticker.tick() => table.sweep().await,
            push = pushes.recv() => {
                let Some(push) = push else { return };
                match bus.decode(push) {
                    Push::Notice(Notice::Session { origin, session, version, prefetch }) => {
                        hub.metrics.bus_event("notice");
                        if origin != hub.origin
                            && let Some(need) = table.on_notice(&session, version, prefetch).await
                        {
                            tokio::spawn(deliver(session, need));
                        }
                    }
                    Push::Notice(Notice::Library { origin }) => {
                        if origin != hub.origin {
                            hub.library_news.notify_one();
                        }
                    }
                    Push::Rejected(e) => {
                        hub.metrics.bus_event("rejected");
                        tracing::warn!(error = %e, "bus: refused a message");
                    }
                    Push::Disconnected => {
                        table.disconnected();
                        table.sweep().await;
                    }
                    Push::Other => {}
                }
            }
        }
    }
}

/// 16 random bytes from the OS as hex: session ids are capabilities (knowing one lets you
/// control its playback), so they must not be guessable. Falls back to a hash of the clock
/// and a counter if /dev/urandom is unreadable (never on Linux in practice).
pub(crate) fn random_id() -> String {
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
