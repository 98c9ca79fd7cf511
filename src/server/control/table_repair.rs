//! The session table's heartbeat work ([`SessionTable::sweep`]): liveness, recovery after a
//! Redis outage, repair of lost notices, removal of dead origins' devices.

use super::super::bus::RedisBus;
use super::super::lock;
use super::super::protocol::{DeviceInfo, ProtocolError};
use super::super::session::{Member, Session, Stamp};
use super::SessionTable;

impl SessionTable {
    /// Every heartbeat: says this origin is alive, notices Redis coming back (and writes the
    /// local sessions back), re-reads each local session (repairing lost notices), removes
    /// the devices of dead origins and of connections gone from here, and keeps the sessions
    /// from expiring. Without a bus, forgets parked sessions past their TTL.
    pub async fn sweep(&self) {
        let Some(bus) = &self.bus else {
            let now = Stamp::now();
            let ttl = self.session_ttl;
            lock(&self.parked).retain(|_, (_, since)| *since + ttl > now);
            return;
        };
        if let Err(e) = bus.beat().await {
            self.degrade(&e);
            return;
        }
        let was_down = lock(&self.down).take();
        if let Some(reason) = was_down {
            tracing::info!(after = %reason, "bus: Redis answers again; control sessions are shared again");
            self.metrics.set_bus_up(true);
            self.metrics.bus_event("recovered");
            self.hold_judgement();
            if let Err(e) = bus.subscribe().await {
                self.degrade(&e);
                return;
            }
        }
        let ids: Vec<String> = lock(&self.local).keys().cloned().collect();
        for id in ids {
            self.sweep_one(bus, &id).await;
        }
    }

    async fn sweep_one(&self, bus: &RedisBus, id: &str) {
        let stored = match bus.load(id).await {
            Ok(stored) => stored.session,
            Err(e) => return self.degrade(&e),
        };
        let Some((mine, here)) = lock(&self.local).get(id).map(|l| {
            let here: Vec<(String, String)> = l
                .peers
                .iter()
                .map(|(d, (_, name))| (d.clone(), name.clone()))
                .collect();
            (l.state.clone(), here)
        }) else {
            return;
        };
        let base = match stored {
            // A stored copy with an older last change than this origin's (another origin
            // wrote its copy back first after an outage) is replaced: the later change wins.
            Some(stored)
                if stored.version() >= mine.version() && stored.changed() >= mine.changed() =>
            {
                if stored.version() > mine.version() {
                    self.metrics.bus_event("repaired");
                    self.adopt(id, stored.clone(), None, None, Stamp::now());
                }
                Some(stored)
            }
            // Lost (Redis restarted), expired, refused, or older than what this origin applied
            // while Redis was down: this origin's copy is written back.
            _ => None,
        };
        let origins: Vec<String> = {
            let state = base.as_ref().unwrap_or(&mine);
            let mut o: Vec<String> = state
                .members()
                .iter()
                .map(|m| m.origin.clone())
                .filter(|o| *o != self.origin)
                .collect();
            o.sort();
            o.dedup();
            o
        };
        let origins = if self.may_judge() {
            origins
        } else {
            Vec::new()
        };
        let dead: Vec<String> = match bus.alive(&origins).await {
            Ok(alive) => origins
                .into_iter()
                .zip(alive)
                .filter(|(_, a)| !a)
                .map(|(o, _)| o)
                .collect(),
            Err(e) => return self.degrade(&e),
        };
        let origin = self.origin.clone();
        let now = Stamp::now();
        let rewrite = base.is_none();
        let fix = |s: &mut Session| {
            for o in &dead {
                s.leave_origin(o, now);
            }
            // This origin's devices are exactly its connections.
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
                    s.join(Member {
                        info: DeviceInfo {
                            id: device.clone(),
                            name: name.clone(),
                        },
                        origin: origin.clone(),
                    })?;
                }
            }
            Ok(())
        };
        if rewrite {
            self.rewrite(bus, id, mine, fix).await;
        } else if let Err(e) = self.update(id, false, None, fix).await {
            tracing::debug!(
                session = id,
                error = e.message,
                "bus: sweep change not stored"
            );
        }
        if let Err(e) = bus.touch(id).await {
            self.degrade(&e);
        }
    }

    /// Writes this origin's copy of `id` back over whatever is stored (after an outage or a
    /// loss), with `fix` applied.
    async fn rewrite(
        &self,
        bus: &RedisBus,
        id: &str,
        mut mine: Session,
        mut fix: impl FnMut(&mut Session) -> Result<(), ProtocolError> + Send,
    ) {
        let held = self.lock_for(id);
        {
            let _order = held.lock().await;
            let stored = bus.version(id).await;
            match stored {
                Ok(expected) => {
                    if fix(&mut mine).is_ok() {
                        mine.bump_version(expected);
                        match bus.store(expected, &mine, None).await {
                            Ok(true) => {
                                self.metrics.bus_event("rewritten");
                                self.adopt(id, mine, None, None, Stamp::now());
                            }
                            Ok(false) => self.metrics.bus_event("conflict"),
                            Err(e) => self.degrade(&e),
                        }
                    }
                }
                Err(e) => self.degrade(&e),
            }
        }
        self.release_lock(id, held);
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
