//! Property tests for what arrives from the network: any text a socket delivers is either a
//! message of the protocol or an error, never a panic, and every message that parses reads back
//! the same after it is written out again. Room codes likewise.

use confab_protocol::{ClientMessage, RoomCode, ServerMessage};
use proptest::prelude::*;
use serde_json::Value;

/// JSON shaped like the protocol's messages (its field names and tags), nested and wrong in every
/// way, so that parsing reaches deep into the message types instead of failing at the first byte.
fn json_like() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type"),
        Just("to"),
        Just("from"),
        Just("payload"),
        Just("kind"),
        Just("sdp"),
        Just("candidate"),
        Just("sdpMid"),
        Just("sdpMLineIndex"),
        Just("version"),
        Just("room"),
        Just("name"),
        Just("you"),
        Just("peers"),
        Just("id"),
        Just("ice_servers"),
        Just("urls"),
        Just("code"),
        Just("message"),
    ]
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("join"),
            Just("signal"),
            Just("leave"),
            Just("ping"),
            Just("offer"),
            Just("answer"),
            Just("candidate"),
            Just("bye"),
            Just("welcome"),
            Just("peer_joined"),
            Just("error"),
            Just("room_full"),
            Just("kfq-wmzt-pxd"),
        ]
        .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_text_is_a_message_or_an_error(text in ".{0,400}") {
        let _ = serde_json::from_str::<ClientMessage>(&text);
        let _ = serde_json::from_str::<ServerMessage>(&text);
    }

    #[test]
    fn what_parses_reads_back_the_same(value in json_like()) {
        if let Ok(msg) = serde_json::from_value::<ClientMessage>(value.clone()) {
            let text = serde_json::to_string(&msg).expect("invariant: a message serializes");
            prop_assert_eq!(serde_json::from_str::<ClientMessage>(&text).ok(), Some(msg));
        }
        if let Ok(msg) = serde_json::from_value::<ServerMessage>(value) {
            let text = serde_json::to_string(&msg).expect("invariant: a message serializes");
            prop_assert_eq!(serde_json::from_str::<ServerMessage>(&text).ok(), Some(msg));
        }
    }

    #[test]
    fn a_room_code_that_parses_is_canonical(input in "[a-zA-Z0-9 _./:#?-]{0,40}") {
        if let Ok(code) = RoomCode::parse(&input) {
            prop_assert_eq!(code.as_str().len(), 12);
            prop_assert_eq!(RoomCode::parse(code.as_str()), Ok(code.clone()));
        }
    }
}
