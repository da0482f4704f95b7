//! Property tests for everything the engine reads from the other peer: data-channel messages and
//! chunks, file names, H.264 payloads, descriptions and signals through the negotiator, and the
//! security code's exchange. Whatever arrives, nothing panics, and what is well formed comes out
//! as it went in.

use confab_engine::data::{chunk_message, parse_chunk, sanitize_file_name, ControlMessage};
use confab_engine::depacketize::depacketize;
use confab_engine::description::screen;
use confab_engine::negotiator::{Action, Candidate, Negotiator};
use confab_engine::security::{commitment, SasExchange, SasState};
use confab_protocol::{PeerId, SignalPayload};
use proptest::prelude::*;

/// Text shaped like SDP: known line kinds in any order, with H.264 or not, CRLF or LF.
fn sdp_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("v=0".to_owned()),
        Just("m=audio 9 UDP/TLS/RTP/SAVPF 111".to_owned()),
        Just("m=video 9 UDP/TLS/RTP/SAVPF 96 102".to_owned()),
        Just("m=video 0 UDP/TLS/RTP/SAVPF 0".to_owned()),
        Just("m=application 9 UDP/DTLS/SCTP webrtc-datachannel".to_owned()),
        Just("a=rtpmap:96 VP8/90000".to_owned()),
        Just("a=rtpmap:102 H264/90000".to_owned()),
        Just("a=sendrecv".to_owned()),
        Just("a=recvonly".to_owned()),
        Just("a=inactive".to_owned()),
        Just("a=ice-ufrag:abcd".to_owned()),
        Just("a=ice-pwd:secret".to_owned()),
        Just("a=fingerprint:sha-256 AA:BB".to_owned()),
        "[ -~]{0,30}",
    ];
    (prop::collection::vec(line, 0..24), any::<bool>()).prop_map(|(lines, crlf)| {
        let eol = if crlf { "\r\n" } else { "\n" };
        lines.iter().map(|l| format!("{l}{eol}")).collect()
    })
}

/// What the other peer may send through the server.
fn payload() -> impl Strategy<Value = SignalPayload> {
    prop_oneof![
        sdp_like().prop_map(|sdp| SignalPayload::Offer { sdp }),
        sdp_like().prop_map(|sdp| SignalPayload::Answer { sdp }),
        (
            ".{0,40}",
            proptest::option::of(".{0,4}"),
            proptest::option::of(any::<u16>())
        )
            .prop_map(
                |(candidate, sdp_mid, sdp_mline_index)| SignalPayload::Candidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index
                }
            ),
        Just(SignalPayload::EndOfCandidates),
        Just(SignalPayload::Bye),
        ".{0,300}".prop_map(|message| SignalPayload::DescriptionError { message }),
    ]
}

#[derive(Debug, Clone)]
enum Event {
    Signal(u64, SignalPayload),
    PeerArrived(u64, bool),
    LocalCandidate,
    GatheringComplete,
    OfferNeeded,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (1..4u64, payload()).prop_map(|(from, p)| Event::Signal(from, p)),
        1 => (1..4u64, any::<bool>()).prop_map(|(id, offer)| Event::PeerArrived(id, offer)),
        1 => Just(Event::LocalCandidate),
        1 => Just(Event::GatheringComplete),
        1 => Just(Event::OfferNeeded),
    ]
}

/// Carries out actions as the session does, each PeerConnection step succeeding or failing as
/// `outcomes` says; returns every action handed out.
fn drive(
    n: &mut Negotiator,
    first: Vec<Action>,
    outcomes: &mut impl Iterator<Item = bool>,
) -> Vec<Action> {
    let mut seen = Vec::new();
    let mut queue: std::collections::VecDeque<Action> = first.into();
    while let Some(action) = queue.pop_front() {
        seen.push(action.clone());
        let ok = outcomes.next().unwrap_or(true);
        let next = match action {
            Action::MakeOffer if ok => {
                n.local_offer_set("our offer".into(), std::time::Instant::now())
            }
            Action::MakeOffer => n.local_description_failed("no"),
            Action::AcceptOffer(_) if ok => {
                let mut next = n.remote_description_set();
                next.extend(n.local_answer_set("our answer".into()));
                next
            }
            Action::AcceptAnswer(_) if ok => n.remote_description_set(),
            Action::AcceptOffer(_) | Action::AcceptAnswer(_) => n.remote_description_failed("bad"),
            _ => Vec::new(),
        };
        queue.extend(next);
        assert!(seen.len() < 10_000, "the negotiator keeps asking for more");
    }
    seen
}

proptest! {
    #[test]
    fn any_control_text_is_a_message_or_ignored(text in ".{0,300}") {
        let _ = serde_json::from_str::<ControlMessage>(&text);
    }

    #[test]
    fn control_messages_round_trip(id in any::<u32>(), text in ".{0,100}", size in any::<u64>(), ok in any::<bool>()) {
        for msg in [
            ControlMessage::Chat { text: text.clone() },
            ControlMessage::FileOffer { id, name: text.clone(), size, sha256: text.clone() },
            ControlMessage::FileResult { id, ok, error: Some(text.clone()) },
            ControlMessage::SasCommit { hash: text.clone() },
            ControlMessage::SasReveal { nonce: text.clone() },
        ] {
            let wire = serde_json::to_string(&msg).expect("invariant: a message serializes");
            prop_assert_eq!(serde_json::from_str::<ControlMessage>(&wire).ok(), Some(msg));
        }
    }

    #[test]
    fn chunks_round_trip_and_short_ones_are_refused(id in any::<u32>(), bytes in prop::collection::vec(any::<u8>(), 0..64), junk in prop::collection::vec(any::<u8>(), 0..8)) {
        let msg = chunk_message(id, &bytes);
        prop_assert_eq!(parse_chunk(&msg), Some((id, &bytes[..])));
        prop_assert_eq!(parse_chunk(&junk).is_some(), junk.len() >= 4);
    }

    #[test]
    fn file_names_stay_in_the_folder(claimed in ".{0,300}") {
        let name = sanitize_file_name(&claimed);
        prop_assert!(!name.is_empty());
        prop_assert!(name.len() <= 200);
        prop_assert!(!name.starts_with('.'));
        prop_assert!(!name.contains(['/', '\\', ':', '<', '>', '"', '|', '?', '*']));
        prop_assert!(!name.chars().any(char::is_control));
        prop_assert!(name != ".." && name != ".");
    }

    #[test]
    fn any_payloads_depacketize_or_fail_cleanly(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)) {
        let _ = depacketize(payloads.iter().map(Vec::as_slice));
    }

    #[test]
    fn nal_units_survive_single_and_fragmented_packets(
        nals in prop::collection::vec((1u8..24, prop::collection::vec(any::<u8>(), 1..200)), 1..5),
        fragment in 1usize..64,
    ) {
        // NAL header: forbidden bit 0, NRI 3, type 1..=23; then the body.
        let nals: Vec<Vec<u8>> = nals.into_iter().map(|(t, body)| {
            let mut nal = vec![0x60 | t];
            nal.extend(body);
            nal
        }).collect();
        let annexb: Vec<u8> = nals.iter().flat_map(|n| [&[0, 0, 0, 1][..], n].concat()).collect();
        let keyframe = nals.iter().any(|n| n[0] & 0x1F == 5);

        let single = depacketize(nals.iter().map(Vec::as_slice)).expect("single NAL packets");
        prop_assert_eq!(&single.annexb, &annexb);
        prop_assert_eq!(single.keyframe, keyframe);

        // FU-A: indicator (F|NRI|28), header (S|E|type), body in pieces.
        let mut packets = Vec::new();
        for nal in &nals {
            let pieces: Vec<&[u8]> = nal[1..].chunks(fragment).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let start = if i == 0 { 0x80 } else { 0 };
                let end = if i + 1 == pieces.len() { 0x40 } else { 0 };
                let mut p = vec![(nal[0] & 0xE0) | 28, start | end | (nal[0] & 0x1F)];
                p.extend_from_slice(piece);
                packets.push(p);
            }
        }
        let fragmented = depacketize(packets.iter().map(Vec::as_slice)).expect("FU-A packets");
        prop_assert_eq!(&fragmented.annexb, &annexb);
    }

    #[test]
    fn screening_a_description_is_stable(sdp in sdp_like()) {
        let once = screen(&sdp);
        prop_assert_eq!(screen(&once.sdp).sdp, once.sdp.clone());
        if !sdp.contains("m=video") {
            prop_assert_eq!(once.sdp, sdp);
        }
    }

    #[test]
    fn the_negotiator_survives_any_peer(
        events in prop::collection::vec(event(), 0..30),
        outcomes in prop::collection::vec(any::<bool>(), 0..200),
    ) {
        let mut n = Negotiator::new(PeerId(2));
        let mut outcomes = outcomes.into_iter();
        for event in events {
            let actions = match event {
                Event::Signal(from, p) => n.on_signal(PeerId(from), p),
                Event::PeerArrived(id, offer) => n.peer_arrived(PeerId(id), offer),
                Event::LocalCandidate => n.local_candidate(Candidate {
                    candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                }),
                Event::GatheringComplete => n.gathering_complete(),
                Event::OfferNeeded => n.offer_needed(),
            };
            for action in drive(&mut n, actions, &mut outcomes) {
                // Only the peer we negotiate with is ever written to.
                if let Action::Send(to, _) = action {
                    prop_assert_eq!(Some(to), n.remote());
                }
            }
        }
    }

    #[test]
    fn the_code_exchange_accepts_only_the_committed_value(
        ours in any::<[u8; 32]>(),
        theirs in any::<[u8; 32]>(),
        revealed in prop_oneof![Just(None), ".{0,70}".prop_map(Some), "[0-9a-fA-F]{64}".prop_map(Some)],
        commit in prop_oneof![Just(None), ".{0,70}".prop_map(Some)],
    ) {
        let mut sas = SasExchange::new(ours);
        sas.commit();
        let _ = sas.on_commit(&commit.unwrap_or_else(|| commitment(&theirs)));
        let revealed = revealed.unwrap_or_else(|| hex::encode(theirs));
        if let SasState::Done(mine, peer) = sas.on_reveal(&revealed).clone() {
            prop_assert_eq!(mine, ours);
            prop_assert_eq!(commitment(&peer), commitment(&theirs));
            prop_assert_eq!(hex::decode(&revealed).ok(), Some(theirs.to_vec()));
        }
    }
}
