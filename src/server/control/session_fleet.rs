//! What a fleet does to a session besides commands: removing a dead origin's devices, and
//! merging copies that diverged during a Redis outage (see `table_repair.rs`).

use super::{Session, Stamp};

impl Session {
    /// Removes every device of `origin` (an origin that died: its sockets are gone), as if
    /// each had left. Returns whether any was a member.
    pub fn leave_origin(&mut self, origin: &str, now: Stamp) -> bool {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.origin == origin)
            .map(|m| m.info.id.clone())
            .collect();
        let mut changed = false;
        for device in gone {
            changed |= self.leave(&device, now);
        }
        changed
    }

    /// Takes the devices of origins other than `origin` from `other` (the copy those origins
    /// wrote, so their word on their own devices), keeping this origin's: when this copy wins
    /// after an outage, it may have missed another origin's joins and leaves.
    pub fn take_devices_of_others(&mut self, other: &Session, origin: &str, now: Stamp) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.origin != origin && !other.members.iter().any(|o| o.info.id == m.info.id))
            .map(|m| m.info.id.clone())
            .collect();
        for device in gone {
            self.leave(&device, now);
        }
        for member in other.members.iter().filter(|m| m.origin != origin) {
            if !self.members.iter().any(|m| m.info.id == member.info.id) {
                // Over the limit only if this origin's devices filled the session meanwhile.
                let _ = self.join(member.clone());
            }
        }
    }

    /// Moves the revision past `seen` (and its own): after a Redis outage, copies that
    /// diverged were shown with revisions of their own, and the copy that wins must reach
    /// every device as a newer revision than any of them saw.
    pub fn outrank(&mut self, seen: u64) {
        self.revision = self.revision.max(seen) + 1;
    }
}
