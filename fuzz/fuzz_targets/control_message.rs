//! The control channel's message parser (`segue::server::control::protocol::parse`), which sees
//! every text frame a WebSocket client sends (docs/control-protocol.md).
//!
//! Input: the frame's text (invalid UTF-8 is converted lossily, as a text frame is always UTF-8;
//! frames over `MAX_MESSAGE_BYTES` never reach the parser). Checked:
//! - an accepted message is a JSON object whose `type` names it, and its fields are within the
//!   protocol's ranges (positions finite and >= 0, volume 0 to 1, 1 to 1000 valid track ids and
//!   an index inside them, names and session ids as documented);
//! - a refusal has one of the documented error codes, `bad_json` never echoes an id, and its
//!   `error` message serializes to JSON that reads back with the same code and id;
//! - an echoed id is a string of at most 64 characters or an integer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use segue::server::control::protocol::{
    ClientMessage, MAX_MESSAGE_BYTES, MAX_NAME, MAX_QUEUE, MessageId, ServerMessage, parse,
    valid_session_id,
};
use segue::store::is_track_id;
use serde_json::Value;

/// The error codes of docs/control-protocol.md.
const DOCUMENTED_CODES: [&str; 11] = [
    "bad_json",
    "bad_message",
    "unknown_type",
    "binary_not_supported",
    "not_joined",
    "already_joined",
    "unknown_track",
    "unknown_device",
    "queue_empty",
    "not_active",
    "rate_limited",
];
/// The codes a parse failure can have (the others come from the session).
const PARSE_CODES: [&str; 3] = ["bad_json", "bad_message", "unknown_type"];

fuzz_target!(init: segue_fuzz::init(), |data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if text.len() > MAX_MESSAGE_BYTES {
        return;
    }
    match parse(&text) {
        Ok((message, id)) => {
            check_id(id.as_ref());
            let object: Value = serde_json::from_str(&text).expect("accepted text is JSON");
            let kind = object.get("type").and_then(Value::as_str);
            assert_eq!(kind, Some(type_name(&message)), "{text}");
            check_message(&message);
        }
        Err((error, id)) => {
            assert!(DOCUMENTED_CODES.contains(&error.code), "{}", error.code);
            assert!(PARSE_CODES.contains(&error.code), "{}", error.code);
            assert!(!error.message.is_empty());
            if error.code == "bad_json" {
                assert_eq!(id, None);
            }
            check_id(id.as_ref());
            let code = error.code;
            let json = ServerMessage::error(error, id.clone()).to_json();
            let back: Value = serde_json::from_str(&json).expect("error message is JSON");
            assert_eq!(back["type"], "error");
            assert_eq!(back["code"], code);
            assert_eq!(back.get("in_reply_to"), id.as_ref(), "{json}");
        }
    }
});

fn check_id(id: Option<&MessageId>) {
    match id {
        None => {}
        Some(Value::String(s)) => assert!(s.chars().count() <= MAX_NAME, "id {s:?}"),
        Some(Value::Number(n)) => assert!(n.is_i64() || n.is_u64(), "id {n}"),
        Some(other) => panic!("echoed id {other}"),
    }
}

fn type_name(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::Hello { .. } => "hello",
        ClientMessage::Load { .. } => "load",
        ClientMessage::Play => "play",
        ClientMessage::Pause => "pause",
        ClientMessage::Seek { .. } => "seek",
        ClientMessage::Next => "next",
        ClientMessage::Previous => "previous",
        ClientMessage::Jump { .. } => "jump",
        ClientMessage::Volume { .. } => "volume",
        ClientMessage::Transfer { .. } => "transfer",
        ClientMessage::Report { .. } => "report",
    }
}

fn seconds(value: f64) {
    assert!(value.is_finite() && value >= 0.0, "{value} s");
}

fn check_message(message: &ClientMessage) {
    match message {
        ClientMessage::Hello { device, session } => {
            let name = device.name.trim();
            assert!((1..=MAX_NAME).contains(&name.chars().count()), "{name:?}");
            assert!(!name.chars().any(char::is_control), "{name:?}");
            if let Some(session) = session {
                assert!(valid_session_id(session), "{session:?}");
                assert!(session.len() <= MAX_NAME);
            }
        }
        ClientMessage::Load {
            tracks,
            index,
            position,
            ..
        } => {
            assert!(
                (1..=MAX_QUEUE).contains(&tracks.len()),
                "{} tracks",
                tracks.len()
            );
            assert!(tracks.iter().all(|t| is_track_id(t)), "{tracks:?}");
            assert!(*index < tracks.len());
            seconds(*position);
        }
        ClientMessage::Seek { position } => seconds(*position),
        ClientMessage::Volume { level } => assert!((0.0..=1.0).contains(level), "{level}"),
        ClientMessage::Transfer { device, .. } => {
            if let Some(device) = device {
                assert!((1..=MAX_NAME).contains(&device.len()), "{device:?}");
            }
        }
        ClientMessage::Report {
            position,
            buffered,
            bandwidth,
            ..
        } => {
            seconds(*position);
            buffered.iter().for_each(|b| seconds(*b));
            bandwidth.iter().for_each(|b| seconds(*b));
        }
        ClientMessage::Play
        | ClientMessage::Pause
        | ClientMessage::Next
        | ClientMessage::Previous
        | ClientMessage::Jump { .. } => {}
    }
}
