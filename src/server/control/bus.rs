//! The Redis side of shared sessions (`--bus redis://…`): where a session is stored, how it is
//! written without losing a concurrent update, and the one channel that says "look again".
//!
//! - A session is a hash `PREFIX:session:ID` with `v` (its version) and `s` (the sealed value,
//!   see [`super::wire`]), expiring after the session TTL unless written or touched again.
//! - Writes are compare-and-set in one Lua script: the value is stored only if `v` is still the
//!   version the writer read, and the notice is published in the same script, so notices go
//!   out in the order of the writes. A Lua script rather than `WATCH`/`MULTI`: `WATCH` belongs
//!   to a connection, and the [`ConnectionManager`] multiplexes every caller onto one (see
//!   tests/redis_peer.rs). A loser reads again and retries (see the session table).
//! - Pub/sub loses messages (a subscriber that is reconnecting misses them for good), so a
//!   notice only carries the version; the stored value is the truth, and every origin re-reads
//!   its sessions on each heartbeat and after a reconnect.
//! - Each origin refreshes `PREFIX:origin:ID` (a key with a TTL of three heartbeats): an origin
//!   that died (SIGKILL: its sockets gone, nobody to say goodbye) is known by its key expiring,
//!   and the others remove its devices from the sessions they share.
//!
//! One connection ([`ConnectionManager`], RESP3) carries commands and the subscription; it
//! reconnects and resubscribes by itself, and a command during an outage fails after the
//! response timeout rather than wait, which is when the session table degrades to local.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, PushInfo, PushKind, Script, Value};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::session::{PrefetchNeed, Session};
use super::wire::{MAX_NOTICE_BYTES, Notice, Sealer, WireError};

/// How long a command may wait for Redis before it fails (and sessions degrade to local).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Compare-and-set of a session, and its notice, in one step (see the module doc).
/// KEYS[1] the session hash; ARGV: expected version ('' = must not exist), new version, sealed
/// value, TTL in ms, channel, sealed notice. Returns 1 when stored, 0 on a version mismatch.
const STORE_SCRIPT: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if v then return 0 end
elseif v ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
";

/// A failure to talk to Redis (recoverable: the table degrades to local and retries).
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct BusError(String);

impl From<redis::RedisError> for BusError {
    fn from(e: redis::RedisError) -> Self {
        BusError(e.to_string())
    }
}

/// What is stored for one session.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Its version (`None`: nothing stored).
    pub version: Option<u64>,
    /// Its value, if stored and valid.
    pub session: Option<Session>,
}

/// What a push from Redis was.
#[derive(Debug)]
pub enum Push {
    /// An authentic notice.
    Notice(Notice),
    /// A message that failed [`Sealer::open`]: logged and dropped.
    Rejected(WireError),
    /// The connection broke (messages may have been lost): re-read everything.
    Disconnected,
    /// A subscribe confirmation or the like.
    Other,
}

/// The fleet's Redis: sessions, origin liveness and the event channel.
#[derive(Clone)]
pub struct RedisBus {
    manager: ConnectionManager,
    sealer: Sealer,
    origin: String,
    prefix: String,
    session_ttl: Duration,
    liveness_ttl: Duration,
    script: Script,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("origin", &self.origin)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisBus {
    /// A bus on `url` (connected lazily: an unreachable Redis at startup is an outage like
    /// any other), and the receiver of its pushes.
    pub fn new(
        url: &str,
        sealer: Sealer,
        origin: String,
        prefix: String,
        session_ttl: Duration,
        heartbeat: Duration,
    ) -> Result<(Self, UnboundedReceiver<PushInfo>), BusError> {
        // Pub/sub on a multiplexed connection needs RESP3 (pushes).
        let url = if url.contains("protocol=") {
            url.to_string()
        } else if url.contains('?') {
            format!("{url}&protocol=resp3")
        } else {
            format!("{url}/?protocol=resp3")
        };
        let client = redis::Client::open(url)?;
        let (pushes, received) = unbounded_channel();
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_max_delay(Duration::from_secs(1))
            .set_push_sender(pushes)
            .set_automatic_resubscription();
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        let bus = RedisBus {
            manager,
            sealer,
            origin,
            prefix,
            session_ttl,
            liveness_ttl: heartbeat * 3,
            script: Script::new(STORE_SCRIPT),
        };
        Ok((bus, received))
    }

    /// This origin's id.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn session_key(&self, id: &str) -> String {
        format!("{}:session:{id}", self.prefix)
    }

    fn origin_key(&self, origin: &str) -> String {
        format!("{}:origin:{origin}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// The stored session `id`: its version and value. The value is `None` when nothing is
    /// stored, or when the stored value is refused (forged, corrupt: logged; the next write,
    /// from this origin's copy, replaces it).
    pub async fn load(&self, id: &str) -> Result<Stored, BusError> {
        let key = self.session_key(id);
        let (version, value): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("v")
            .arg("s")
            .query_async(&mut self.manager.clone())
            .await?;
        let session = match (version, value) {
            (Some(version), Some(value)) => match self.sealer.open_session(&key, id, &value) {
                Ok(session) if session.version() == version => Some(session),
                Ok(_) => {
                    tracing::warn!(
                        session = id,
                        "bus: a stored session's version does not match its value; refused"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(session = id, error = %e, "bus: refused a stored session");
                    None
                }
            },
            _ => None,
        };
        Ok(Stored { version, session })
    }

    /// The stored version of `id` (`None`: no session stored).
    pub async fn version(&self, id: &str) -> Result<Option<u64>, BusError> {
        let version: Option<u64> = self.manager.clone().hget(self.session_key(id), "v").await?;
        Ok(version)
    }

    /// Stores `session` if the stored version is still `expected` (`None`: nothing stored),
    /// and publishes its notice. `Ok(false)`: someone wrote in between; read and try again.
    pub async fn store(
        &self,
        expected: Option<u64>,
        session: &Session,
        prefetch: Option<PrefetchNeed>,
    ) -> Result<bool, BusError> {
        let key = self.session_key(session.id());
        let channel = self.channel();
        let notice = Notice::Session {
            origin: self.origin.clone(),
            session: session.id().to_string(),
            version: session.version(),
            prefetch,
        };
        let ttl_ms = u64::try_from(self.session_ttl.as_millis()).unwrap_or(u64::MAX);
        let stored: i64 = self
            .script
            .key(&key)
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(session.version())
            .arg(self.sealer.seal(&key, session))
            .arg(ttl_ms)
            .arg(&channel)
            .arg(self.sealer.seal(&channel, &notice))
            .invoke_async(&mut self.manager.clone())
            .await?;
        Ok(stored == 1)
    }

    /// Keeps session `id` from expiring (it has devices here).
    pub async fn touch(&self, id: &str) -> Result<(), BusError> {
        let ttl_ms = i64::try_from(self.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let _: i64 = self
            .manager
            .clone()
            .pexpire(self.session_key(id), ttl_ms)
            .await?;
        Ok(())
    }

    /// Says this origin is alive for three more heartbeats (also the connection's heartbeat:
    /// the manager only reconnects when a command is sent). Returns whether the previous
    /// beat's key was still there: `false` after the first beat means Redis lost its keys
    /// (restarted or flushed), which a reconnect alone may not reveal.
    pub async fn beat(&self) -> Result<bool, BusError> {
        let ttl_ms = u64::try_from(self.liveness_ttl.as_millis()).unwrap_or(u64::MAX);
        // SET … GET (Redis 6.2+): the write and the check in one command.
        let previous: Option<String> = redis::cmd("SET")
            .arg(self.origin_key(&self.origin))
            .arg(1)
            .arg("PX")
            .arg(ttl_ms)
            .arg("GET")
            .query_async(&mut self.manager.clone())
            .await?;
        Ok(previous.is_some())
    }

    /// Whether each of `origins` is alive (its liveness key exists); `None` when this
    /// origin's own key is gone too. It was written by this sweep's beat, so Redis lost its
    /// keys since (a restart or a flush) and a missing key proves nothing. Checked last, so
    /// that a loss at any point before it is seen.
    pub async fn alive(&self, origins: &[String]) -> Result<Option<Vec<bool>>, BusError> {
        if origins.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut pipe = redis::pipe();
        for origin in origins {
            pipe.exists(self.origin_key(origin));
        }
        pipe.exists(self.origin_key(&self.origin));
        let mut alive: Vec<bool> = pipe.query_async(&mut self.manager.clone()).await?;
        Ok(match alive.pop() {
            Some(true) => Some(alive),
            _ => None,
        })
    }

    /// Subscribes to the event channel (again after an outage: a subscription that failed is
    /// not one the manager restores by itself).
    pub async fn subscribe(&self) -> Result<(), BusError> {
        self.manager.clone().subscribe(self.channel()).await?;
        Ok(())
    }

    /// Tells every origin to rescan the library now.
    pub async fn publish_library(&self) -> Result<(), BusError> {
        let channel = self.channel();
        let notice = Notice::Library {
            origin: self.origin.clone(),
        };
        let _: i64 = self
            .manager
            .clone()
            .publish(&channel, self.sealer.seal(&channel, &notice))
            .await?;
        Ok(())
    }

    /// What `push` is (see [`Push`]).
    pub fn decode(&self, push: PushInfo) -> Push {
        match push.kind {
            PushKind::Disconnection => Push::Disconnected,
            PushKind::Message => {
                let channel = self.channel();
                match push.data.as_slice() {
                    [Value::BulkString(name), Value::BulkString(payload)]
                        if name.as_slice() == channel.as_bytes() =>
                    {
                        match self.sealer.open(&channel, payload, MAX_NOTICE_BYTES) {
                            Ok(notice) => Push::Notice(notice),
                            Err(e) => Push::Rejected(e),
                        }
                    }
                    _ => Push::Rejected(WireError::Malformed),
                }
            }
            _ => Push::Other,
        }
    }
}
