use super::*;

const ID: &str = "00112233445566778899aabb";

fn code(text: &str) -> &'static str {
    parse(text).expect_err(text).0.code
}

#[test]
fn every_command_parses() {
    let ok = |text: &str| parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}")).0;
    assert_eq!(
        ok(r#"{"type":"hello","device":{"name":"Kitchen"},"session":"home-1"}"#),
        ClientMessage::Hello {
            device: DeviceHello {
                name: "Kitchen".into()
            },
            session: Some("home-1".into())
        }
    );
    assert_eq!(
        ok(&format!(
            r#"{{"type":"load","tracks":["{ID}","{ID}"],"index":1}}"#
        )),
        ClientMessage::Load {
            tracks: vec![ID.into(), ID.into()],
            index: 1,
            position: 0.0,
            play: true
        }
    );
    assert_eq!(ok(r#"{"type":"play","extra":[1,2]}"#), ClientMessage::Play);
    assert_eq!(
        ok(r#"{"type":"seek","position":12.5}"#),
        ClientMessage::Seek { position: 12.5 }
    );
    assert_eq!(
        ok(r#"{"type":"transfer"}"#),
        ClientMessage::Transfer {
            device: None,
            play: None
        }
    );
    assert!(matches!(
        ok(r#"{"type":"report","index":0,"position":1,"playing":true,"bandwidth":9e6}"#),
        ClientMessage::Report { .. }
    ));
    for simple in ["pause", "next", "previous"] {
        ok(&format!(r#"{{"type":"{simple}"}}"#));
    }
}

#[test]
fn each_failure_has_its_own_code_and_keeps_the_id() {
    assert_eq!(code("{"), "bad_json");
    assert_eq!(code("[1,2]"), "bad_json");
    assert_eq!(code(r#"{"id":1}"#), "bad_message");
    assert_eq!(code(r#"{"type":7}"#), "bad_message");
    assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
    let (error, id) = parse(r#"{"type":"seek","id":2,"position":"ten"}"#).unwrap_err();
    assert_eq!(error.code, "bad_message");
    assert!(error.message.starts_with("seek: "), "{}", error.message);
    assert_eq!(id, Some(serde_json::json!(2)));
    // An id that is not a short string or an integer is not echoed.
    let (_, id) = parse(r#"{"type":"nope","id":{"a":1}}"#).unwrap_err();
    assert_eq!(id, None);
}

#[test]
fn values_out_of_range_are_refused() {
    for text in [
        r#"{"type":"seek","position":-1}"#.to_string(),
        r#"{"type":"volume","level":1.5}"#.into(),
        r#"{"type":"hello","device":{"name":""}}"#.into(),
        r#"{"type":"hello","device":{"name":"x"},"session":"a b"}"#.into(),
        format!(
            r#"{{"type":"hello","device":{{"name":"{}"}}}}"#,
            "n".repeat(65)
        ),
        r#"{"type":"load","tracks":[]}"#.into(),
        r#"{"type":"load","tracks":["../../etc/passwd"]}"#.into(),
        format!(r#"{{"type":"load","tracks":["{ID}"],"index":1}}"#),
        r#"{"type":"report","index":0,"position":1,"playing":true,"bandwidth":-5}"#.into(),
        r#"{"type":"transfer","device":""}"#.into(),
    ] {
        assert_eq!(code(&text), "bad_message", "{text}");
    }
}

#[test]
fn server_messages_serialize_with_their_type() {
    let json =
        ServerMessage::error(ProtocolError::new("rate_limited", "slow down"), None).to_json();
    assert_eq!(
        json,
        r#"{"type":"error","code":"rate_limited","message":"slow down"}"#
    );
    let state = ServerMessage::State(SessionState {
        session: "s".into(),
        revision: 3,
        queue: vec![],
        index: 0,
        track: None,
        position: 0.0,
        playing: false,
        volume: 1.0,
        active_device: None,
        devices: vec![],
    })
    .to_json();
    assert!(
        state.starts_with(r#"{"type":"state","session":"s","revision":3"#),
        "{state}"
    );
}
