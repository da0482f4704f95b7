//! Long-running fuzz mode for every parser of remote input: mutates well-formed seeds (signaling
//! messages, data-channel messages, chunks, file names, H.264 payloads and access units (both
//! decoders), descriptions, the code exchange) for `FUZZ_SECS` seconds (default 10) and prints
//! executions and failures per target (`FUZZ_SECS=600 cargo bench --workspace --bench fuzz`).
//! A failure is a panic; the first input that caused one is printed. Exits 1 if any failed.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use confab_codecs::h264::{DecoderBackend, EncoderSettings, H264Decoder, H264Encoder};
use confab_engine::data::{parse_chunk, sanitize_file_name, ControlMessage};
use confab_engine::depacketize::depacketize;
use confab_engine::description::screen;
use confab_engine::negotiator::{Action, Negotiator};
use confab_engine::security::SasExchange;
use confab_media::{pattern, VideoFrame};
use confab_protocol::{ClientMessage, PeerId, ServerMessage, SignalPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secret\r\na=fingerprint:sha-256 AA:BB\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendrecv\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";

/// One byte-level mutation: flip, insert, delete, duplicate a span, or splice in a token.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"null",
        b"-1",
        b"1e999",
        b"\\u0000",
        b"m=video 0 ",
        b"\r\n",
        b"a=inactive",
        b"\xff\xfe",
        b"18446744073709551616",
    ];
    let len = input.len();
    match rng.random_range(0..5) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let i = rng.random_range(0..=len);
            input.insert(i, rng.random());
        }
        2 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(16));
            input.drain(i..i + n);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(32));
            let span = input[i..i + n].to_vec();
            let at = rng.random_range(0..=input.len());
            input.splice(at..at, span);
        }
        _ => {
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            let at = rng.random_range(0..=len);
            input.splice(at..at, token.iter().copied());
        }
    }
}

struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    run: fn(&[u8]),
    executions: u64,
    failures: u64,
    first_failure: Option<Vec<u8>>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A keyframe and two P frames of the test pattern at 176x144: access units as the decoder
/// gets them.
fn h264_seeds() -> Vec<Vec<u8>> {
    let mut encoder = H264Encoder::new(EncoderSettings {
        bitrate_bps: 200_000,
        max_fps: 30.0,
        screen: false,
    })
    .expect("encoder");
    (0..3)
        .filter_map(|i| {
            let frame = pattern::render(i, 176, 144, u64::from(i) * 33_333);
            encoder
                .encode(&frame)
                .expect("encode")
                .map(|unit| unit.data)
        })
        .collect()
}

fn targets() -> Vec<Target> {
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    let target = |name, seeds, run| Target {
        name,
        seeds,
        run,
        executions: 0,
        failures: 0,
        first_failure: None,
    };
    vec![
        target(
            "signaling messages",
            vec![
                json(
                    serde_json::json!({"type": "join", "version": 1, "room": "kfq-wmzt-pxd", "name": "A"}),
                ),
                json(
                    serde_json::json!({"type": "signal", "from": 2, "payload": {"kind": "offer", "sdp": SDP}}),
                ),
                json(
                    serde_json::json!({"type": "welcome", "version": 1, "room": "kfq-wmzt-pxd", "you": 1, "peers": [{"id": 2, "name": "B"}], "ice_servers": [{"urls": ["turn:x"], "username": "u", "credential": "c"}]}),
                ),
            ],
            |b| {
                let t = text(b);
                let _ = serde_json::from_str::<ClientMessage>(&t);
                let _ = serde_json::from_str::<ServerMessage>(&t);
            },
        ),
        target(
            "data-channel messages",
            vec![
                json(serde_json::json!({"type": "chat", "text": "hi"})),
                json(
                    serde_json::json!({"type": "file_offer", "id": 3, "name": "a.txt", "size": 9, "sha256": "ab"}),
                ),
                json(serde_json::json!({"type": "sas_commit", "hash": "00".repeat(32)})),
            ],
            |b| {
                let _ = serde_json::from_str::<ControlMessage>(&text(b));
            },
        ),
        target(
            "file chunks and names",
            vec![
                b"\0\0\0\x07../../etc/passwd".to_vec(),
                "CON.txt\u{202e}gpj.exe".as_bytes().to_vec(),
            ],
            |b| {
                let _ = parse_chunk(b);
                let name = sanitize_file_name(&text(b));
                assert!(!name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.'));
            },
        ),
        target(
            "H.264 depacketizer",
            vec![
                vec![0x65, 1, 2, 3, 0xFF, 0x41, 9, 9],
                vec![
                    24, 0, 2, 0x67, 1, 0, 2, 0x68, 2, 0xFF, 0x7C, 0x85, 1, 2, 0xFF, 0x7C, 0x45, 3,
                ],
            ],
            |b| {
                // 0xFF separates packets in the seed.
                let _ = depacketize(b.split(|&x| x == 0xFF));
            },
        ),
        target(
            "descriptions through the negotiator",
            vec![SDP.as_bytes().to_vec()],
            |b| {
                let sdp = text(b);
                let _ = screen(&sdp);
                let mut n = Negotiator::new(PeerId(1));
                n.peer_arrived(PeerId(2), false);
                for action in n.on_signal(PeerId(2), SignalPayload::Offer { sdp: sdp.clone() }) {
                    if let Action::AcceptOffer(_) = action {
                        n.remote_description_failed("fuzz");
                    }
                }
                let _ = n.on_signal(PeerId(2), SignalPayload::Answer { sdp });
            },
        ),
        target("H.264 decoders (FFmpeg, openh264)", h264_seeds(), |b| {
            // The decoders keep state from unit to unit, as in a call; a crash ends the run.
            thread_local! {
                static DECODERS: RefCell<Vec<H264Decoder>> = RefCell::new(
                    [DecoderBackend::Ffmpeg, DecoderBackend::OpenH264]
                        .into_iter()
                        .map(|backend| H264Decoder::with_backend(backend).expect("decoder"))
                        .collect(),
                );
            }
            DECODERS.with_borrow_mut(|decoders| {
                for decoder in decoders {
                    if let Ok(Some(picture)) = decoder.decode(b) {
                        let (w, h) = (picture.width, picture.height);
                        assert_eq!(picture.data.len(), VideoFrame::i420_len(w, h));
                    }
                }
            });
        }),
        target("security code exchange", vec![b"00".repeat(32)], |b| {
            let mut sas = SasExchange::new([1; 32]);
            sas.commit();
            let t = text(b);
            let _ = sas.on_commit(&t);
            let _ = sas.on_reveal(&t);
        }),
    ]
}

fn main() {
    let secs: u64 = std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    // Panics are what we count; keep their messages out of the report.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut targets = targets();
    let per_target = Duration::from_secs(secs) / targets.len() as u32;
    for target in &mut targets {
        let until = Instant::now() + per_target;
        while Instant::now() < until {
            for _ in 0..64 {
                let mut input = target.seeds[rng.random_range(0..target.seeds.len())].clone();
                for _ in 0..rng.random_range(1..8) {
                    mutate(&mut rng, &mut input);
                }
                target.executions += 1;
                if catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
                    target.failures += 1;
                    target.first_failure.get_or_insert(input);
                }
            }
        }
    }
    let _ = std::panic::take_hook();
    println!("fuzz: {secs} s, seed {seed} (FUZZ_SECS, FUZZ_SEED)");
    let mut failed = false;
    for t in &targets {
        println!(
            "{:<38} {:>10} executions {:>6} failures",
            t.name, t.executions, t.failures
        );
        if let Some(input) = &t.first_failure {
            failed = true;
            println!("  first failing input: {:?}", text(input));
        }
    }
    if failed {
        std::process::exit(1);
    }
}
