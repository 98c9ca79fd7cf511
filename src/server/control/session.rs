//! One playback session shared by several devices (Spotify Connect's model): a queue, a
//! position, playing or paused, a volume, and which device plays.
//!
//! The session is a plain state machine: commands come in with the time they arrived, and each
//! either changes the state (the caller then broadcasts it) or is refused with a protocol error.
//! The position is kept as "`position` seconds at instant `since`", advanced by the clock while
//! playing, so no timer runs; the active device's reports correct it.
//!
//! It is plain data (serde) with wall-clock times ([`Stamp`], Unix milliseconds), because with a
//! bus (`--bus`) it is stored in Redis and read by every origin: an `Instant` means nothing to
//! another process. Loaded from the bus it is checked again ([`Session::check`]) before use.

use serde::{Deserialize, Serialize};

pub use super::stamp::Stamp;

#[path = "session_fleet.rs"]
mod fleet;

use super::protocol::{DeviceInfo, MAX_NAME, MAX_QUEUE, ProtocolError, SessionState};

/// A `previous` later than this into a track restarts it instead.
const RESTART_THRESHOLD_S: f64 = 3.0;
/// A report that differs from the predicted position by more than this is broadcast.
const DRIFT_BROADCAST_S: f64 = 1.0;

/// Most devices in one session (a `hello` beyond it is refused): one session cannot grow without
/// bound, in memory or in Redis.
pub const MAX_DEVICES: usize = 32;

/// One queue entry: a track and its duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Track id.
    pub track: String,
    /// Duration in seconds.
    pub duration: f64,
}

/// A device joined to the session, and the origin whose connection it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Id and name.
    pub info: DeviceInfo,
    /// The origin (server process) holding its connection.
    pub origin: String,
}

/// A command, as the session sees it (validated, tracks resolved).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Replace the queue.
    Load {
        /// Entries with durations.
        queue: Vec<QueueEntry>,
        /// Start index (valid).
        index: usize,
        /// Start position, seconds.
        position: f64,
        /// Whether to play.
        play: bool,
    },
    /// Resume.
    Play,
    /// Pause.
    Pause,
    /// Move within the current track.
    Seek(f64),
    /// Next track.
    Next,
    /// Previous track.
    Previous,
    /// Go to a queue index.
    Jump(usize),
    /// Volume 0-1.
    Volume(f64),
    /// Move playback to a device (the sender when `None`).
    Transfer {
        /// Target device id.
        device: Option<String>,
        /// Play or pause there.
        play: Option<bool>,
    },
    /// The active device's real position.
    Report {
        /// Queue index.
        index: usize,
        /// Seconds into the track.
        position: f64,
        /// Playing or not.
        playing: bool,
        /// Bandwidth in bit/s.
        bandwidth: Option<f64>,
    },
}

/// The prefetch a change calls for: the next track, for the active device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchNeed {
    /// The active device.
    pub device: String,
    /// Queue index of the next track.
    pub index: usize,
    /// Its track id.
    pub track: String,
    /// The device's last reported bandwidth, bit/s.
    pub bandwidth: Option<u64>,
}

/// A playback session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    id: String,
    revision: u64,
    /// Moves on every stored change, visible or not: the compare-and-set version of the bus.
    #[serde(default)]
    version: u64,
    /// When a device's command last changed it (not joins and leaves): when two origins hold
    /// diverged copies after a Redis outage, the later change wins.
    changed: Stamp,
    queue: Vec<QueueEntry>,
    index: usize,
    playing: bool,
    position: f64,
    since: Stamp,
    volume: f64,
    active: Option<String>,
    members: Vec<Member>,
    bandwidth: Option<u64>,
    /// (device, index, track) of the last prefetch sent, so each is sent once.
    prefetched: Option<(String, usize, String)>,
}

impl Session {
    /// An empty session.
    pub fn new(id: String, now: Stamp) -> Self {
        Session {
            id,
            revision: 0,
            version: 0,
            changed: now,
            queue: Vec::new(),
            index: 0,
            playing: false,
            position: 0.0,
            since: now,
            volume: 1.0,
            active: None,
            members: Vec::new(),
            bandwidth: None,
            prefetched: None,
        }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The devices joined.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// When a command last changed it.
    pub fn changed(&self) -> Stamp {
        self.changed
    }

    /// The visible revision (what `state` messages carry).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The stored version (see [`Session::bump_version`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Marks a stored change: every write to the bus moves the version past both this
    /// session's and `stored` (the version in Redis, which a refused value may have left
    /// ahead).
    pub fn bump_version(&mut self, stored: Option<u64>) {
        self.version = self.version.max(stored.unwrap_or(0)) + 1;
    }

    /// Adds a device (a state change), unless the session has [`MAX_DEVICES`] already.
    pub fn join(&mut self, member: Member) -> Result<(), ProtocolError> {
        if self.members.len() >= MAX_DEVICES {
            return Err(ProtocolError::new(
                "session_full",
                format!("hello: this session has {MAX_DEVICES} devices already"),
            ));
        }
        self.members.push(member);
        self.revision += 1;
        Ok(())
    }

    /// Checks the invariants a session read from the bus must hold (the bus is another
    /// process's word: a forged or corrupt value must not reach the state machine), and that
    /// it is the session `id`.
    pub fn check(&self, id: &str) -> Result<(), String> {
        let bad = |what: &str| Err(format!("session {id}: {what}"));
        if self.id != id {
            return bad("stored under another id");
        }
        if self.queue.len() > MAX_QUEUE || self.members.len() > MAX_DEVICES {
            return bad("queue or device list over the limits");
        }
        if !self.queue.is_empty() && self.index >= self.queue.len() {
            return bad("index outside the queue");
        }
        let finite = |x: f64| x.is_finite() && x >= 0.0;
        if !finite(self.position)
            || !(0.0..=1.0).contains(&self.volume)
            || self.queue.iter().any(|e| !finite(e.duration))
        {
            return bad("a position, duration or volume out of range");
        }
        let short = |s: &str| !s.is_empty() && s.len() <= MAX_NAME;
        if self.members.iter().any(|m| {
            !short(&m.info.id) || m.info.name.chars().count() > MAX_NAME || !short(&m.origin)
        }) {
            return bad("a device with an invalid id, name or origin");
        }
        Ok(())
    }

    /// Removes a device; if it was playing, playback pauses where it was. Returns whether it
    /// was a member.
    pub fn leave(&mut self, device: &str, now: Stamp) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.info.id != device);
        if self.members.len() == before {
            return false;
        }
        if self.active.as_deref() == Some(device) {
            self.settle(now);
            self.active = None;
            self.playing = false;
            self.prefetched = None;
        }
        self.revision += 1;
        true
    }

    /// The current track's duration, or 0 with an empty queue.
    fn duration(&self) -> f64 {
        self.queue.get(self.index).map_or(0.0, |e| e.duration)
    }

    /// The position now, in seconds.
    pub fn position_at(&self, now: Stamp) -> f64 {
        let elapsed = if self.playing {
            now.seconds_since(self.since)
        } else {
            0.0
        };
        (self.position + elapsed).min(self.duration())
    }

    /// Folds the elapsed time into `position`.
    fn settle(&mut self, now: Stamp) {
        self.position = self.position_at(now);
        self.since = now;
    }

    fn go_to(&mut self, index: usize, position: f64, now: Stamp) {
        self.index = index;
        self.position = position.clamp(0.0, self.duration());
        self.since = now;
    }

    fn require_queue(&self) -> Result<(), ProtocolError> {
        if self.queue.is_empty() {
            Err(ProtocolError::new(
                "queue_empty",
                "the queue is empty: load tracks first",
            ))
        } else {
            Ok(())
        }
    }

    /// Applies `command` from device `sender`; `Ok(true)` when the state changed (to
    /// broadcast), `Ok(false)` when nothing visible changed.
    pub fn apply(
        &mut self,
        sender: &str,
        command: Command,
        now: Stamp,
    ) -> Result<bool, ProtocolError> {
        let applied = self.apply_command(sender, command, now);
        if applied.is_ok() {
            // Forward along the session's history even if this origin's clock is behind the
            // one that made the last change (recovery compares these).
            self.changed = now.max(Stamp(self.changed.0.saturating_add(1)));
        }
        applied
    }

    fn apply_command(
        &mut self,
        sender: &str,
        command: Command,
        now: Stamp,
    ) -> Result<bool, ProtocolError> {
        match command {
            Command::Load {
                queue,
                index,
                position,
                play,
            } => {
                self.queue = queue;
                self.go_to(index, position, now);
                self.playing = play;
                self.prefetched = None;
                self.active.get_or_insert_with(|| sender.to_string());
            }
            Command::Play => {
                self.require_queue()?;
                self.settle(now);
                self.playing = true;
                self.active.get_or_insert_with(|| sender.to_string());
            }
            Command::Pause => {
                self.settle(now);
                self.playing = false;
            }
            Command::Seek(position) => {
                self.require_queue()?;
                self.go_to(self.index, position, now);
            }
            Command::Next => {
                self.require_queue()?;
                if self.index + 1 < self.queue.len() {
                    self.go_to(self.index + 1, 0.0, now);
                } else {
                    // Past the end of the queue: stop at its start, like a finished album.
                    self.go_to(0, 0.0, now);
                    self.playing = false;
                }
            }
            Command::Previous => {
                self.require_queue()?;
                let index = if self.position_at(now) > RESTART_THRESHOLD_S {
                    self.index
                } else {
                    self.index.saturating_sub(1)
                };
                self.go_to(index, 0.0, now);
            }
            Command::Jump(index) => {
                self.require_queue()?;
                if index >= self.queue.len() {
                    return Err(ProtocolError::new(
                        "bad_message",
                        format!(
                            "jump: index {index} is outside the {} tracks",
                            self.queue.len()
                        ),
                    ));
                }
                self.go_to(index, 0.0, now);
            }
            Command::Volume(level) => self.volume = level,
            Command::Transfer { device, play } => {
                let target = device.unwrap_or_else(|| sender.to_string());
                if !self.members.iter().any(|m| m.info.id == target) {
                    return Err(ProtocolError::new(
                        "unknown_device",
                        format!("no device {target:?} in this session"),
                    ));
                }
                self.settle(now);
                self.active = Some(target);
                if let Some(play) = play {
                    self.playing = play;
                }
            }
            Command::Report {
                index,
                position,
                playing,
                bandwidth,
            } => return self.report(sender, index, position, playing, bandwidth, now),
        }
        self.revision += 1;
        Ok(true)
    }

    fn report(
        &mut self,
        sender: &str,
        index: usize,
        position: f64,
        playing: bool,
        bandwidth: Option<f64>,
        now: Stamp,
    ) -> Result<bool, ProtocolError> {
        if self.active.as_deref() != Some(sender) {
            return Err(ProtocolError::new(
                "not_active",
                "report: only the active device reports its position",
            ));
        }
        if index >= self.queue.len() {
            return Err(ProtocolError::new(
                "bad_message",
                format!(
                    "report: index {index} is outside the {} tracks",
                    self.queue.len()
                ),
            ));
        }
        if let Some(b) = bandwidth {
            // The first measurement makes the hint of the next track worth sending again: the
            // one sent at `load` could only name the lowest rendition.
            if self.bandwidth.is_none() {
                self.prefetched = None;
            }
            self.bandwidth = Some(b as u64);
        }
        let predicted = self.position_at(now);
        let visible = index != self.index
            || playing != self.playing
            || (position - predicted).abs() > DRIFT_BROADCAST_S;
        self.go_to(index, position, now);
        self.playing = playing;
        if visible {
            self.revision += 1;
        }
        Ok(visible)
    }

    /// The next track to prefetch for the active device, once per (device, track).
    pub fn prefetch_need(&mut self) -> Option<PrefetchNeed> {
        let device = self.active.clone()?;
        if !self.playing {
            return None;
        }
        let index = self.index + 1;
        let track = self.queue.get(index)?.track.clone();
        let key = (device.clone(), index, track.clone());
        if self.prefetched.as_ref() == Some(&key) {
            return None;
        }
        self.prefetched = Some(key);
        Some(PrefetchNeed {
            device,
            index,
            track,
            bandwidth: self.bandwidth,
        })
    }

    /// The state to broadcast, as of `now`.
    pub fn snapshot(&self, now: Stamp) -> SessionState {
        SessionState {
            session: self.id.clone(),
            revision: self.revision,
            queue: self.queue.iter().map(|e| e.track.clone()).collect(),
            index: self.index,
            track: self.queue.get(self.index).map(|e| e.track.clone()),
            position: self.position_at(now),
            playing: self.playing,
            volume: self.volume,
            active_device: self.active.clone(),
            devices: self.members.iter().map(|m| m.info.clone()).collect(),
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
