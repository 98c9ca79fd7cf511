//! The session table's work with other origins: their notices ([`SessionTable::on_notice`]),
//! and the heartbeat ([`SessionTable::sweep`]): liveness, recovery after a Redis outage, repair
//! of lost notices, removal of dead origins' devices.
//!
//! Recovery rule. Without an outage here, this origin's copy of a session is one Redis held,
//! and versions order the history (every write moves the version past the stored one): the
//! higher version is the session. A copy changed here while Redis was down (`diverged`) has
//! a version that says nothing about Redis's, so it competes with the stored copy by its last
//! command's time: the later change wins, and the winner is written with a revision past every
//! one either side showed, so every device sees it as news.

use std::sync::atomic::Ordering;

use super::super::bus::{BusError, RedisBus};
use super::super::lock;
use super::super::protocol::{DeviceInfo, ProtocolError};
use super::super::session::{Member, PrefetchNeed, Session, Stamp};
use super::SessionTable;

impl SessionTable {
    /// Every half heartbeat: says this origin is alive, notices Redis coming back or having
    /// lost its keys, reconciles each local session with the stored one (repairing lost
    /// notices and outages), removes the devices of dead origins and of connections gone from
    /// here, and keeps the sessions from expiring. Without a bus, forgets parked sessions past
    /// their TTL.
    pub async fn sweep(&self) {
        let Some(bus) = &self.bus else {
            let now = Stamp::now();
            let ttl = self.session_ttl;
            lock(&self.parked).retain(|_, (_, since)| *since + ttl > now);
            return;
        };
        let kept = match bus.beat().await {
            Ok(kept) => kept,
            Err(e) => return self.degrade(&e),
        };
        let first = !self.beaten.swap(true, Ordering::Relaxed);
        let was_down = lock(&self.down).take();
        if let Some(reason) = &was_down {
            tracing::info!(after = %reason, "bus: Redis answers again; control sessions are shared again");
            self.metrics.set_bus_up(true);
            self.metrics.bus_event("recovered");
        } else if !kept && !first {
            // Redis restarted (or was flushed) between two beats, too fast for a command to
            // fail here: every origin's liveness key is gone with it, and the sessions too.
            tracing::info!(
                "bus: Redis lost its keys (restarted or flushed); sessions are written back"
            );
            self.metrics.bus_event("reset");
        }
        if was_down.is_some() || (!kept && !first) {
            // No origin is judged dead until each had time to say it is alive again.
            self.hold_judgement();
            if let Err(e) = bus.subscribe().await {
                return self.degrade(&e);
            }
        }
        let ids: Vec<String> = lock(&self.local).keys().cloned().collect();
        for id in ids {
            self.reconcile(bus, &id).await;
        }
        // Leaves of sessions with no device here any more, made while Redis was down.
        let leaves = std::mem::take(&mut *lock(&self.pending_leaves));
        for (id, device) in leaves {
            let now = Stamp::now();
            let stored = self
                .update(&id, false, None, |s| {
                    s.leave(&device, now);
                    Ok(())
                })
                .await;
            if let Err(e) = stored {
                tracing::debug!(
                    session = id,
                    error = e.message,
                    "bus: pending leave dropped"
                );
            }
        }
    }

    /// A notice that session `id` was stored at `version` by another origin: re-read it if it
    /// is one of ours and newer. Returns the prefetch to deliver here, if any.
    pub async fn on_notice(
        &self,
        id: &str,
        version: u64,
        prefetch: Option<PrefetchNeed>,
    ) -> Option<PrefetchNeed> {
        let known = lock(&self.local).get(id).map(|l| l.state.version())?;
        if version > known {
            self.refresh(id).await;
        }
        prefetch.filter(|n| self.peer(id, &n.device).is_some())
    }

    /// Re-reads session `id` from the bus and adopts it if newer.
    async fn refresh(&self, id: &str) {
        let Some(bus) = self.live_bus() else {
            return;
        };
        match bus.load(id).await.map(|stored| stored.session) {
            Ok(Some(session)) => {
                // A diverged copy, or one that does not list this origin's devices as they
                // are (another origin wrote back its copy after an outage), is reconciled
                // under the session's lock rather than shown as it is.
                let as_is = lock(&self.local)
                    .get(id)
                    .filter(|l| session.version() > l.state.version())
                    .map(|l| !l.diverged && l.lists_own_devices(&session, &self.origin));
                match as_is {
                    Some(true) => {
                        self.adopt(id, session, None, None, Stamp::now());
                    }
                    Some(false) => self.reconcile(bus, id).await,
                    None => {}
                }
            }
            Ok(None) => {}
            Err(e) => self.degrade(&e),
        }
    }

    /// [`SessionTable::reconcile_locked`] under the session's lock, then keeps it from
    /// expiring.
    pub(super) async fn reconcile(&self, bus: &RedisBus, id: &str) {
        let held = self.lock_for(id);
        let result = {
            let _order = held.lock().await;
            self.reconcile_locked(bus, id).await
        };
        self.release_lock(id, held);
        match result {
            Ok(()) => {
                if let Err(e) = bus.touch(id).await {
                    self.degrade(&e);
                }
            }
            Err(e) => self.degrade(&e),
        }
    }

    /// Makes this origin's copy of `id` and Redis's one session again (see the module doc),
    /// with the devices of dead origins removed and this origin's devices exactly its
    /// connections. The caller holds the session's lock.
    pub(super) async fn reconcile_locked(&self, bus: &RedisBus, id: &str) -> Result<(), BusError> {
        let stored = bus.load(id).await?;
        let Some((mine, here, shown, diverged)) = lock(&self.local).get(id).map(|l| {
            let here: Vec<(String, String)> = l
                .peers
                .iter()
                .map(|(d, (_, name))| (d.clone(), name.clone()))
                .collect();
            (l.state.clone(), here, l.shown, l.diverged)
        }) else {
            return Ok(());
        };
        // `None`: lost (Redis restarted), expired, refused, or older than this origin's
        // copy, which is written back.
        let winner = stored.session.clone().filter(|s| {
            if diverged {
                s.changed() >= mine.changed()
            } else {
                s.version() >= mine.version()
            }
        });
        let dead = self
            .dead_origins(bus, winner.as_ref().unwrap_or(&mine))
            .await?;
        let origin = self.origin.clone();
        let now = Stamp::now();
        let fix = |s: &mut Session| {
            for o in &dead {
                s.leave_origin(o, now);
            }
            let gone: Vec<String> = s
                .members()
                .iter()
                .filter(|m| m.origin == origin && !here.iter().any(|(d, _)| *d == m.info.id))
                .map(|m| m.info.id.clone())
                .collect();
            for d in gone {
                s.leave(&d, now);
            }
            for (device, name) in &here {
                if !s.members().iter().any(|m| m.info.id == *device) {
                    // A session that filled up with other origins' devices during an outage
                    // keeps this one connected but unlisted until a place frees up.
                    let _ = s.join(Member {
                        info: DeviceInfo {
                            id: device.clone(),
                            name: name.clone(),
                        },
                        origin: origin.clone(),
                    });
                }
            }
        };
        let Some(winner) = winner else {
            let mut next = mine;
            if let Some(stored) = &stored.session {
                next.take_devices_of_others(stored, &origin, now);
            }
            fix(&mut next);
            next.outrank(shown.max(stored.session.as_ref().map_or(0, Session::revision)));
            next.bump_version(stored.version);
            if bus.store(stored.version, &next, None).await? {
                self.metrics.bus_event("rewritten");
                if let Some(l) = lock(&self.local).get_mut(id) {
                    l.state = next;
                    l.diverged = false;
                    l.show(None, now);
                }
            } else {
                // Written in between: the next sweep compares again.
                self.metrics.bus_event("conflict");
            }
            return Ok(());
        };
        let result = if diverged {
            // What the devices here saw during the outage gives way to the stored copy,
            // shown to them as a newer revision.
            if let Some(l) = lock(&self.local).get_mut(id) {
                l.state = winner;
                l.diverged = false;
            }
            self.metrics.bus_event("repaired");
            let mut outranked = |s: &mut Session| {
                fix(s);
                s.outrank(shown);
                Ok(())
            };
            self.update_locked(id, false, None, &mut outranked).await
        } else {
            if winner.version() > mine.version() {
                // A notice was lost, or the stored copy needs this origin's devices fixed:
                // shown once fixed, so that no device sees its own session without it.
                self.metrics.bus_event("repaired");
                if let Some(l) = lock(&self.local).get_mut(id) {
                    l.state = winner;
                }
            }
            let mut fixed = |s: &mut Session| {
                fix(s);
                Ok::<(), ProtocolError>(())
            };
            let result = self.update_locked(id, false, None, &mut fixed).await;
            // Nothing to fix: nothing stored, so nothing shown yet.
            if let Some(l) = lock(&self.local).get_mut(id) {
                l.show(None, now);
            }
            result
        };
        if let Err(e) = result {
            tracing::debug!(
                session = id,
                error = e.message,
                "bus: sweep change not stored"
            );
            if diverged && let Some(l) = lock(&self.local).get_mut(id) {
                // Compared again on the next sweep.
                l.diverged = true;
            }
        }
        Ok(())
    }

    /// The origins holding devices of `state` whose liveness key expired (none while
    /// judgement is held).
    async fn dead_origins(&self, bus: &RedisBus, state: &Session) -> Result<Vec<String>, BusError> {
        if !self.may_judge() {
            return Ok(Vec::new());
        }
        let mut origins: Vec<String> = state
            .members()
            .iter()
            .map(|m| m.origin.clone())
            .filter(|o| *o != self.origin)
            .collect();
        origins.sort();
        origins.dedup();
        let Some(alive) = bus.alive(&origins).await? else {
            self.hold_judgement();
            return Ok(Vec::new());
        };
        Ok(origins
            .into_iter()
            .zip(alive)
            .filter(|(_, a)| !a)
            .map(|(o, _)| o)
            .collect())
    }

    /// Marks the bus as possibly having lost messages and keys (a reconnect): the next sweep
    /// re-reads, and no origin is judged dead until each had time to say it is alive again.
    pub fn disconnected(&self) {
        self.metrics.bus_event("disconnected");
        self.hold_judgement();
    }

    fn hold_judgement(&self) {
        *lock(&self.judge_after) = Some(std::time::Instant::now() + self.liveness);
    }

    /// Whether liveness keys can be trusted now (see `judge_after`).
    fn may_judge(&self) -> bool {
        let mut after = lock(&self.judge_after);
        match *after {
            Some(t) if std::time::Instant::now() < t => false,
            _ => {
                *after = None;
                true
            }
        }
    }
}
