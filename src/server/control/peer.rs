//! The sending side of one WebSocket connection, as the rest of the server holds it.
//!
//! Messages go into a queue that the connection's task drains onto the socket. The queue is
//! bounded in bytes, not in messages (as Centrifugo bounds its client queues): a burst of small
//! `state` messages while the connection's task waits for a CPU is not a client that does not
//! read, while a few large ones (a 1,000-track queue is about 27 KB) are enough to notice one.
//! A message that does not fit means the client does not read: rather than wait for it (and
//! hold up everyone broadcasting to its session), the peer is flagged and its task closes the
//! connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

/// A handle to send to one connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Peer {
    id: u64,
    queue: mpsc::UnboundedSender<Utf8Bytes>,
    /// Bytes sent and not yet taken by the connection's task.
    queued: Arc<AtomicUsize>,
    budget: usize,
    overflow: Arc<Notify>,
}

/// What the connection's task keeps: the receiving ends.
#[derive(Debug)]
pub struct PeerInbox {
    queue: mpsc::UnboundedReceiver<Utf8Bytes>,
    queued: Arc<AtomicUsize>,
    /// Notified when a message did not fit in the queue.
    pub overflow: Arc<Notify>,
}

impl Peer {
    /// A peer whose queue holds at most `budget` bytes (one message of any size always fits
    /// an empty queue), and its inbox.
    pub fn new(id: u64, budget: usize) -> (Peer, PeerInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let overflow = Arc::new(Notify::new());
        let peer = Peer {
            id,
            queue: tx,
            queued: Arc::clone(&queued),
            budget,
            overflow: Arc::clone(&overflow),
        };
        (
            peer,
            PeerInbox {
                queue: rx,
                queued,
                overflow,
            },
        )
    }

    /// The connection's id, unique in the server.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues `text` without waiting. When it does not fit, the peer is flagged for
    /// disconnection and `false` returned; a closed connection also returns `false`.
    pub fn send(&self, text: Utf8Bytes) -> bool {
        let len = text.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.budget {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.overflow.notify_one();
            return false;
        }
        if self.queue.send(text).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }
}

impl PeerInbox {
    /// The next queued message; `None` once every peer handle is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Utf8Bytes> {
        let text = self.queue.recv().await?;
        self.queued.fetch_sub(text.len(), Ordering::AcqRel);
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_flags_the_peer_instead_of_waiting() {
        let (peer, mut inbox) = Peer::new(1, 8);
        assert!(peer.send("aaaa".into()));
        assert!(peer.send("bbbb".into()));
        assert!(!peer.send("c".into()));
        // The flag is stored even though nobody waited on it yet.
        inbox.overflow.notified().await;
        assert_eq!(inbox.recv().await.unwrap().as_str(), "aaaa");
        // What was taken frees its bytes.
        assert!(peer.send("dddd".into()));
        assert!(!peer.send("e".into()));
        drop(inbox);
        assert!(!peer.send("f".into()));
    }

    #[test]
    fn one_message_larger_than_the_budget_fits_an_empty_queue() {
        let (peer, _inbox) = Peer::new(1, 4);
        assert!(peer.send("longer than four".into()));
        assert!(!peer.send("x".into()));
    }
}
