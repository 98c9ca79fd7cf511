//! The sending side of one WebSocket connection, as the rest of the server holds it.
//!
//! Messages go into a bounded queue that the connection's task drains onto the socket. A queue
//! that fills up means the client does not read: rather than wait for it (and hold up everyone
//! broadcasting to its session), the peer is flagged and its task closes the connection.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

/// A handle to send to one connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct Peer {
    id: u64,
    queue: mpsc::Sender<Utf8Bytes>,
    overflow: Arc<Notify>,
}

/// What the connection's task keeps: the receiving ends.
#[derive(Debug)]
pub struct PeerInbox {
    /// Messages to write to the socket.
    pub queue: mpsc::Receiver<Utf8Bytes>,
    /// Notified when the queue overflowed.
    pub overflow: Arc<Notify>,
}

impl Peer {
    /// A peer with a send queue of `capacity` messages, and its inbox.
    pub fn new(id: u64, capacity: usize) -> (Peer, PeerInbox) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Notify::new());
        let peer = Peer {
            id,
            queue: tx,
            overflow: Arc::clone(&overflow),
        };
        (
            peer,
            PeerInbox {
                queue: rx,
                overflow,
            },
        )
    }

    /// The connection's id, unique in the server.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues `text` without waiting. On a full queue the peer is flagged for disconnection
    /// and `false` returned; a closed connection also returns `false`.
    pub fn send(&self, text: Utf8Bytes) -> bool {
        match self.queue.try_send(text) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_flags_the_peer_instead_of_waiting() {
        let (peer, mut inbox) = Peer::new(1, 2);
        assert!(peer.send("a".into()));
        assert!(peer.send("b".into()));
        assert!(!peer.send("c".into()));
        // The flag is stored even though nobody waited on it yet.
        inbox.overflow.notified().await;
        assert_eq!(inbox.queue.recv().await.unwrap().as_str(), "a");
        drop(inbox);
        assert!(!peer.send("d".into()));
    }
}
