//! The sessions of the control channel, in this process or shared through Redis (`--bus`).
//!
//! Every change goes through [`SessionTable::update`]: the session is read, the state machine
//! applies the change to a copy, and the copy is written back. With a bus, the write is a
//! compare-and-set ([`RedisBus::store`]); a writer that lost the race to another origin reads
//! the new value and applies its command again, so concurrent commands on two origins are
//! applied once each, in one order, and none is lost. Commands of one session on one origin
//! also queue on a per-session lock, so they keep their arrival order and do not race each
//! other's compare-and-set.
//!
//! Each origin keeps the sessions that have devices on it (`Local`): the last state it saw,
//! and the devices' send queues. A change is broadcast to the local devices when its
//! `revision` moved; other origins learn of it from the bus's notice and re-read it, and every
//! heartbeat each origin re-reads its sessions anyway ([`SessionTable::sweep`]), which repairs
//! a lost notice and removes the devices of origins that died.
//!
//! When Redis does not answer, the table degrades: the local copies become the truth for this
//! origin's devices (one warning, `/healthz` says so), and when Redis answers again each is
//! reconciled with the stored copy: the later command wins, and the devices other live origins
//! hold are kept (the rule is in `table_repair.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;

use super::bus::{RedisBus, Stored};
use super::lock;
use super::peer::Peer;
use super::protocol::{DeviceInfo, ProtocolError, ServerMessage};
use super::session::{Member, PrefetchNeed, Session, Stamp};
use crate::server::metrics::Metrics;

#[path = "table_repair.rs"]
mod repair;

/// Most sessions without devices kept in this process (no bus) until their TTL.
const MAX_PARKED: usize = 10_000;
/// Attempts at one compare-and-set before the command is refused as `busy`.
const MAX_ATTEMPTS: usize = 16;

/// A session with devices on this origin.
#[derive(Debug)]
struct Local {
    /// The last state seen (the truth without a bus, or while it is down).
    state: Session,
    /// The revision last broadcast to the devices here.
    shown: u64,
    /// The devices here: id -> (send queue, name).
    peers: HashMap<String, (Peer, String)>,
    /// Changed here while Redis was down: `state` is not what Redis holds at its version,
    /// and must be reconciled with the stored copy before the next write (see
    /// [`SessionTable::reconcile`]).
    diverged: bool,
}

/// What a change did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The prefetch the change calls for, when its device is on this origin.
    pub prefetch: Option<PrefetchNeed>,
}

/// The sessions, local and (with a bus) shared.
#[derive(Debug)]
pub struct SessionTable {
    origin: String,
    bus: Option<RedisBus>,
    /// Why the bus is down (`None`: up, or no bus).
    down: Mutex<Option<String>>,
    local: Mutex<HashMap<String, Local>>,
    /// Without a bus: sessions whose devices all left, kept until the TTL (a device that
    /// reconnects finds its session as it was).
    parked: Mutex<HashMap<String, (Session, Stamp)>>,
    /// Leaves that could not be stored in Redis: (session, device), stored by the next sweep
    /// that finds Redis answering.
    pending_leaves: Mutex<Vec<(String, String)>>,
    /// One lock per session with a change in progress: changes on this origin queue in order.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    session_ttl: Duration,
    /// How long an origin's liveness key lasts (three heartbeats).
    liveness: Duration,
    /// Until then no origin is judged dead: Redis has just come back (empty, perhaps) and the
    /// live origins have not all said so again yet.
    judge_after: Mutex<Option<std::time::Instant>>,
    metrics: Arc<Metrics>,
    next_device: AtomicU64,
    /// Whether this origin has said it is alive once already (so a missing liveness key
    /// afterwards means Redis lost its keys).
    beaten: AtomicBool,
}

impl Local {
    /// Whether `session` lists exactly the devices connected here as this origin's.
    fn lists_own_devices(&self, session: &Session, origin: &str) -> bool {
        let listed = session.members().iter().filter(|m| m.origin == origin);
        listed.clone().count() == self.peers.len()
            && listed
                .into_iter()
                .all(|m| self.peers.contains_key(&m.info.id))
    }

    /// Broadcasts the state to the devices here (but `joining`, which gets it after its
    /// `welcome`) if its revision moved past the one they saw.
    fn show(&mut self, joining: Option<&str>, now: Stamp) {
        if self.state.revision() > self.shown || self.shown == 0 {
            self.shown = self.state.revision();
            let text = state_text(&self.state, now);
            for (device, (peer, _)) in &self.peers {
                if Some(device.as_str()) != joining {
                    peer.send(text.clone());
                }
            }
        }
    }
}

/// The state message of `session`, as text.
fn state_text(session: &Session, now: Stamp) -> Utf8Bytes {
    Utf8Bytes::from(ServerMessage::State(session.snapshot(now)).to_json())
}

impl SessionTable {
    /// A table for this `origin`, shared through `bus` if there is one.
    pub fn new(
        origin: String,
        bus: Option<RedisBus>,
        session_ttl: Duration,
        heartbeat: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_bus_up(bus.is_some());
        let liveness = heartbeat * 3;
        SessionTable {
            origin,
            bus,
            down: Mutex::new(None),
            local: Mutex::new(HashMap::new()),
            parked: Mutex::new(HashMap::new()),
            pending_leaves: Mutex::new(Vec::new()),
            locks: Mutex::new(HashMap::new()),
            session_ttl,
            liveness,
            judge_after: Mutex::new(Some(std::time::Instant::now() + liveness)),
            metrics,
            next_device: AtomicU64::new(1),
            beaten: AtomicBool::new(false),
        }
    }

    /// This origin's id.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The bus, if one is configured.
    pub fn bus(&self) -> Option<&RedisBus> {
        self.bus.as_ref()
    }

    /// The bus while it answers (`None`: no bus, or degraded to local).
    fn live_bus(&self) -> Option<&RedisBus> {
        self.bus.as_ref().filter(|_| lock(&self.down).is_none())
    }

    /// `/healthz`'s line about the bus: `None` without one.
    pub fn health(&self) -> Option<String> {
        self.bus.as_ref()?;
        Some(match &*lock(&self.down) {
            None => "redis ok".into(),
            Some(reason) => format!("local (redis unreachable: {reason})"),
        })
    }

    /// Marks the bus down now (its first subscription failed).
    pub fn degrade_now(&self, error: &dyn std::fmt::Display) {
        self.degrade(error);
    }

    /// Marks the bus down (one warning per outage).
    fn degrade(&self, error: &dyn std::fmt::Display) {
        let mut down = lock(&self.down);
        if down.is_none() {
            tracing::warn!(error = %error, "bus: Redis does not answer; control sessions are local to this origin until it does");
            *down = Some(error.to_string());
            self.metrics.set_bus_up(false);
            self.metrics.bus_event("degraded");
        }
    }

    /// A new device id, unique in the fleet (random: device ids are shown to other devices).
    pub fn new_device_id(&self) -> String {
        let n = self.next_device.fetch_add(1, Ordering::Relaxed);
        format!("d{}{n}", &super::random_id()[..10])
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.locks).entry(id.to_string()).or_default())
    }

    /// Drops the session's lock entry if nobody else holds it.
    fn release_lock(&self, id: &str, held: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = lock(&self.locks);
        // Two references: the map's and `held`.
        if Arc::strong_count(&held) <= 2 {
            locks.remove(id);
        }
    }

    /// Joins device `name` (connection `peer`) to session `id`, creating it if needed.
    /// Returns the device id.
    pub async fn join(&self, id: &str, name: &str, peer: Peer) -> Result<String, ProtocolError> {
        let device = self.new_device_id();
        let member = Member {
            info: DeviceInfo {
                id: device.clone(),
                name: name.to_string(),
            },
            origin: self.origin.clone(),
        };
        let registered = (peer, name.to_string());
        let result = self
            .update(id, true, Some((&device, registered)), |s| {
                s.join(member.clone())
            })
            .await;
        match result {
            Ok(_) => Ok(device),
            Err(e) => Err(e),
        }
    }

    /// Removes `device` from session `id` (its connection closed).
    pub async fn leave(&self, id: &str, device: &str) {
        let last = {
            let mut local = lock(&self.local);
            match local.get_mut(id) {
                Some(l) => {
                    l.peers.remove(device);
                    l.peers.is_empty()
                }
                None => true,
            }
        };
        let now = Stamp::now();
        let shared = self.live_bus().is_some();
        let stored = self
            .update(id, false, None, |s| {
                s.leave(device, now);
                Ok(())
            })
            .await;
        if let Err(e) = &stored {
            tracing::debug!(session = id, error = e.message, "control: leave not stored");
        }
        // Not stored in Redis (it was down): the sweep stores it once Redis is back, or this
        // device would stay in the shared session, which no live origin would clear.
        if self.bus.is_some() && (stored.is_err() || !shared || self.live_bus().is_none()) {
            let mut pending = lock(&self.pending_leaves);
            if pending.len() < MAX_PARKED {
                pending.push((id.to_string(), device.to_string()));
            }
        }
        if last {
            let mut local = lock(&self.local);
            if local.get(id).is_some_and(|l| l.peers.is_empty())
                && let Some(l) = local.remove(id)
                && self.bus.is_none()
            {
                let mut parked = lock(&self.parked);
                if parked.len() >= MAX_PARKED {
                    // Bounded memory: the session parked longest goes first.
                    let oldest = parked
                        .iter()
                        .min_by_key(|(_, (_, since))| *since)
                        .map(|(k, _)| k.clone());
                    if let Some(oldest) = oldest {
                        parked.remove(&oldest);
                    }
                }
                parked.insert(id.to_string(), (l.state, Stamp::now()));
            }
        }
    }

    /// Applies `change` to session `id` and stores it (see the module doc), broadcasting the
    /// result to this origin's devices. `create`: start the session if it does not exist;
    /// `register`: a device to add to the local devices first (a `hello`).
    pub async fn update<F>(
        &self,
        id: &str,
        create: bool,
        register: Option<(&str, (Peer, String))>,
        mut change: F,
    ) -> Result<Applied, ProtocolError>
    where
        F: FnMut(&mut Session) -> Result<(), ProtocolError> + Send,
    {
        let held = self.lock_for(id);
        let result = {
            let _order = held.lock().await;
            // A copy changed during an outage is reconciled with Redis's before it is
            // written again: its version says nothing about what Redis holds.
            if self.is_diverged(id)
                && let Some(bus) = self.live_bus()
                && let Err(e) = self.reconcile_locked(bus, id).await
            {
                self.degrade(&e);
            }
            self.update_locked(id, create, register, &mut change).await
        };
        self.release_lock(id, held);
        result
    }

    async fn update_locked(
        &self,
        id: &str,
        create: bool,
        register: Option<(&str, (Peer, String))>,
        change: &mut (dyn FnMut(&mut Session) -> Result<(), ProtocolError> + Send),
    ) -> Result<Applied, ProtocolError> {
        let now = Stamp::now();
        if let Some(bus) = self.live_bus() {
            let cached = lock(&self.local).get(id).map(|l| l.state.clone());
            let mut current = match &cached {
                Some(s) => Ok(Stored {
                    version: Some(s.version()),
                    session: Some(s.clone()),
                }),
                None => bus.load(id).await,
            };
            for _ in 0..MAX_ATTEMPTS {
                let stored = match current {
                    Ok(stored) => stored,
                    Err(e) => {
                        self.degrade(&e);
                        break;
                    }
                };
                let expected = stored.version;
                // A refused stored value is replaced by this origin's copy.
                let mut next = match stored.session.or_else(|| cached.clone()) {
                    Some(s) => s,
                    None if create => Session::new(id.to_string(), now),
                    None => return Err(gone(id)),
                };
                let before = next.clone();
                change(&mut next)?;
                let need = next.prefetch_need();
                if next == before && register.is_none() && expected == Some(next.version()) {
                    return Ok(Applied::default());
                }
                next.bump_version(expected);
                match bus.store(expected, &next, need.clone()).await {
                    Ok(true) => return Ok(self.adopt(id, next, register, need, now)),
                    Ok(false) => {
                        self.metrics.bus_event("conflict");
                        current = bus.load(id).await;
                    }
                    Err(e) => {
                        self.degrade(&e);
                        break;
                    }
                }
            }
            if self.live_bus().is_some() {
                return Err(ProtocolError::new(
                    "busy",
                    "the session is changing too fast; try again",
                ));
            }
        }
        // In this process: no bus, or it is down.
        let base = lock(&self.local)
            .get(id)
            .map(|l| l.state.clone())
            .or_else(|| lock(&self.parked).remove(id).map(|(s, _)| s));
        let mut next = match base {
            Some(s) => s,
            None if create => Session::new(id.to_string(), now),
            None => return Err(gone(id)),
        };
        change(&mut next)?;
        let need = next.prefetch_need();
        next.bump_version(None);
        let applied = self.adopt(id, next, register, need, now);
        if self.bus.is_some()
            && let Some(l) = lock(&self.local).get_mut(id)
        {
            l.diverged = true;
        }
        Ok(applied)
    }

    /// Whether session `id` was changed here while Redis was down and not reconciled yet.
    fn is_diverged(&self, id: &str) -> bool {
        lock(&self.local).get(id).is_some_and(|l| l.diverged)
    }

    /// Makes `session` the local state of `id` (registering a device first), broadcasts it if
    /// its revision moved, and returns the prefetch to deliver here.
    fn adopt(
        &self,
        id: &str,
        session: Session,
        register: Option<(&str, (Peer, String))>,
        need: Option<PrefetchNeed>,
        now: Stamp,
    ) -> Applied {
        let mut local = lock(&self.local);
        if register.is_none() && !local.contains_key(id) {
            // Nobody here any more (the last device left): nothing to keep or tell.
            return Applied::default();
        }
        let entry = local.entry(id.to_string()).or_insert_with(|| Local {
            state: session.clone(),
            shown: 0,
            peers: HashMap::new(),
            diverged: false,
        });
        // A joining device gets its first state after its `welcome` (see `send_state`).
        let joining = register.map(|(device, peer)| {
            entry.peers.insert(device.to_string(), peer);
            device
        });
        if session.version() < entry.state.version() {
            return Applied::default();
        }
        entry.state = session;
        entry.show(joining, now);
        Applied {
            prefetch: need.filter(|n| entry.peers.contains_key(&n.device)),
        }
    }

    /// The send queue of `device` in session `id`, if it is on this origin.
    pub fn peer(&self, id: &str, device: &str) -> Option<Peer> {
        lock(&self.local)
            .get(id)
            .and_then(|l| l.peers.get(device).map(|(p, _)| p.clone()))
    }

    /// Sends the current state of `id` to one device of this origin (after its `welcome`).
    pub fn send_state(&self, id: &str, device: &str) {
        if let Some(l) = lock(&self.local).get(id)
            && let Some((peer, _)) = l.peers.get(device)
        {
            peer.send(state_text(&l.state, Stamp::now()));
        }
    }

    /// Sessions with devices here (for tests and metrics).
    pub fn local_sessions(&self) -> usize {
        lock(&self.local).len()
    }
}

/// The error for a session that is gone.
fn gone(id: &str) -> ProtocolError {
    ProtocolError::new("no_session", format!("session {id} is gone"))
}
