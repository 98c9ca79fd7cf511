//! The messages of `segue.control.v1` (docs/control-protocol.md) and their validation.
//!
//! A text frame is parsed in two steps so every failure gets its own error code: first as any
//! JSON object with a string `type` (`bad_json`, `unknown_type`), then as that type's fields
//! (`bad_message`, with serde's explanation prefixed by the type). Field values are then checked
//! against the protocol's ranges, so the session logic only ever sees valid commands.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::view::{PrefetchHint, Track};
use crate::store::is_track_id;

/// The subprotocol name, and the `protocol` of `welcome`.
pub const PROTOCOL: &str = "segue.control.v1";
/// Largest message accepted, in bytes (larger ones close the connection with 1009).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most tracks in a `load`.
pub const MAX_QUEUE: usize = 1000;
/// Longest device name or session id, in characters.
pub const MAX_NAME: usize = 64;

/// The client messages' `type`s.
const CLIENT_TYPES: [&str; 11] = [
    "hello", "load", "play", "pause", "seek", "next", "previous", "jump", "volume", "transfer",
    "report",
];

/// A message from a client, validated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Join a session.
    Hello {
        /// This device.
        device: DeviceHello,
        /// Session to join (a new one when absent).
        session: Option<String>,
    },
    /// Replace the queue.
    Load {
        /// Track ids.
        tracks: Vec<String>,
        /// Queue entry to start at.
        #[serde(default)]
        index: usize,
        /// Start position in seconds.
        #[serde(default)]
        position: f64,
        /// Whether to start playing.
        #[serde(default = "yes")]
        play: bool,
    },
    /// Resume.
    Play,
    /// Pause.
    Pause,
    /// Move within the current track.
    Seek {
        /// Target in track seconds.
        position: f64,
    },
    /// Next track.
    Next,
    /// Previous track (or the start of this one).
    Previous,
    /// Go to a queue entry.
    Jump {
        /// Queue index.
        index: usize,
    },
    /// Session volume.
    Volume {
        /// From 0 to 1.
        level: f64,
    },
    /// Move playback to a device.
    Transfer {
        /// Target device id (the sender when absent).
        device: Option<String>,
        /// Play or pause there (keep when absent).
        play: Option<bool>,
    },
    /// Where playback really is, from the active device.
    Report {
        /// Queue index playing.
        index: usize,
        /// Position in track seconds.
        position: f64,
        /// Whether audio is playing.
        playing: bool,
        /// Seconds buffered ahead.
        buffered: Option<f64>,
        /// Measured bandwidth in bit/s.
        bandwidth: Option<f64>,
    },
}

fn yes() -> bool {
    true
}

/// The device part of `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceHello {
    /// Display name.
    pub name: String,
}

/// A message id given by the client, repeated in errors.
pub type MessageId = Value;

/// Why a message was refused: the `error` message's `code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// Error code (see the protocol document).
    pub code: &'static str,
    /// Explanation for the client.
    pub message: String,
}

impl ProtocolError {
    /// An error with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

/// Parses and validates one text frame; on failure also returns the message's `id` if it
/// could be read.
pub fn parse(
    text: &str,
) -> Result<(ClientMessage, Option<MessageId>), (ProtocolError, Option<MessageId>)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            ProtocolError::new("bad_json", format!("not valid JSON: {e}")),
            None,
        )
    })?;
    let Value::Object(object) = &value else {
        return Err((
            ProtocolError::new("bad_json", "a message must be a JSON object"),
            None,
        ));
    };
    let id = object.get("id").cloned().filter(valid_id);
    let fail = |code, message: String| Err((ProtocolError::new(code, message), id.clone()));
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return fail("bad_message", "type must be a string".into()),
        None => return fail("bad_message", "a message needs a type".into()),
    };
    if !CLIENT_TYPES.contains(&kind) {
        let shown: String = kind.chars().take(MAX_NAME).collect();
        return fail(
            "unknown_type",
            format!("unknown message type {shown:?}; this server speaks {PROTOCOL}"),
        );
    }
    let kind = kind.to_string();
    let message: ClientMessage = match serde_json::from_value(value) {
        Ok(message) => message,
        Err(e) => return fail("bad_message", format!("{kind}: {e}")),
    };
    match validate(&message) {
        Ok(()) => Ok((message, id)),
        Err(reason) => fail("bad_message", format!("{kind}: {reason}")),
    }
}

/// An id is a short string or an integer; anything else is ignored.
fn valid_id(id: &Value) -> bool {
    match id {
        Value::String(s) => s.chars().count() <= MAX_NAME,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

fn seconds(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a number of seconds, 0 or more"))
    }
}

/// Whether `session` is a valid session id.
pub fn valid_session_id(session: &str) -> bool {
    (1..=MAX_NAME).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks the ranges the types cannot express.
fn validate(message: &ClientMessage) -> Result<(), String> {
    match message {
        ClientMessage::Hello { device, session } => {
            let name = device.name.trim();
            if name.is_empty()
                || name.chars().count() > MAX_NAME
                || name.chars().any(char::is_control)
            {
                return Err(format!(
                    "device.name must be 1 to {MAX_NAME} printable characters"
                ));
            }
            if let Some(session) = session
                && !valid_session_id(session)
            {
                return Err(format!(
                    "session must be 1 to {MAX_NAME} of A-Z a-z 0-9 - _"
                ));
            }
            Ok(())
        }
        ClientMessage::Load {
            tracks,
            index,
            position,
            ..
        } => {
            if tracks.is_empty() || tracks.len() > MAX_QUEUE {
                return Err(format!("tracks must hold 1 to {MAX_QUEUE} track ids"));
            }
            if let Some(bad) = tracks.iter().find(|t| !is_track_id(t)) {
                let shown: String = bad.chars().take(MAX_NAME).collect();
                return Err(format!("{shown:?} is not a track id"));
            }
            if *index >= tracks.len() {
                return Err(format!(
                    "index {index} is outside the {} tracks",
                    tracks.len()
                ));
            }
            seconds("position", *position)
        }
        ClientMessage::Seek { position } => seconds("position", *position),
        ClientMessage::Volume { level } => {
            if (0.0..=1.0).contains(level) {
                Ok(())
            } else {
                Err("level must be from 0 to 1".into())
            }
        }
        ClientMessage::Transfer {
            device: Some(device),
            ..
        } if device.is_empty() || device.len() > MAX_NAME => {
            Err("device must be a device id".into())
        }
        ClientMessage::Report {
            position,
            buffered,
            bandwidth,
            ..
        } => {
            seconds("position", *position)?;
            if let Some(b) = buffered {
                seconds("buffered", *b)?;
            }
            match bandwidth {
                Some(b) if !(b.is_finite() && *b >= 0.0) => {
                    Err("bandwidth must be a number of bit/s, 0 or more".into())
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// One device of a session, as `state` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device id, unique in the server.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// The session's state, as broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Session id.
    pub session: String,
    /// Increases by one per change.
    pub revision: u64,
    /// The queue's track ids.
    pub queue: Vec<String>,
    /// Current queue index.
    pub index: usize,
    /// Current track id, if the queue is not empty.
    pub track: Option<String>,
    /// Position in the current track, in seconds, as of sending.
    pub position: f64,
    /// Whether playback is running.
    pub playing: bool,
    /// Session volume, 0 to 1.
    pub volume: f64,
    /// The device that plays, if any.
    pub active_device: Option<String>,
    /// Every device of the session.
    pub devices: Vec<DeviceInfo>,
}

/// The `limits` of `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Sustained command rate allowed.
    pub commands_per_second: u32,
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome {
        /// [`PROTOCOL`].
        protocol: &'static str,
        /// Session joined.
        session: String,
        /// The receiver's device id.
        device: String,
        /// Seconds between pings.
        heartbeat: u64,
        /// Limits of this connection.
        limits: Limits,
    },
    /// The session's state.
    State(SessionState),
    /// What to fetch for the next track.
    Prefetch {
        /// Track id.
        track: String,
        /// Its queue index.
        index: usize,
        /// Why (`next`).
        reason: &'static str,
        /// The files.
        hint: PrefetchHint,
    },
    /// Tracks added while the server runs.
    Library {
        /// The new tracks.
        added: Vec<Track>,
    },
    /// A message could not be carried out.
    Error {
        /// Error code.
        code: &'static str,
        /// Explanation.
        message: String,
        /// The `id` of the message it answers.
        #[serde(skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<MessageId>,
    },
}

impl ServerMessage {
    /// The `error` message for `error`.
    pub fn error(error: ProtocolError, in_reply_to: Option<MessageId>) -> Self {
        ServerMessage::Error {
            code: error.code,
            message: error.message,
            in_reply_to,
        }
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no foreign
        // Serialize impls; an empty object is a safe fallback all the same.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
