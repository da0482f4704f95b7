//! A hostile signaling relay for tests: sits between the peers and the real signaling server,
//! forwards every WebSocket message, and rewrites the descriptions the server delivers (as a
//! compromised server could), so tests can check what the security code makes of it, or loses
//! one (as a signaling socket that died unnoticed does), so tests can check the call recovers.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tungstenite::{Message, WebSocket};

/// What the relay does to each description on its way to a peer, given its kind (`offer` or
/// `answer`) and SDP: the SDP to deliver instead, or `None` to lose the message.
pub type Tamper = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// Loses the first description of `kind` (`offer` or `answer`) the server delivers to anyone;
/// the rest pass unchanged.
pub fn lose_first(kind: &'static str) -> Tamper {
    let lost = AtomicBool::new(false);
    Arc::new(move |k: &str, sdp: &str| {
        if k == kind && !lost.swap(true, Ordering::SeqCst) {
            None
        } else {
            Some(sdp.to_owned())
        }
    })
}

/// Adds `n` junk `a=fingerprint` lines after every real one (they are never verified by DTLS).
pub fn add_fingerprints(n: usize) -> Tamper {
    Arc::new(move |_kind: &str, sdp: &str| {
        let mut out = String::new();
        for (i, line) in sdp.split_inclusive('\n').enumerate() {
            out.push_str(line);
            if line.starts_with("a=fingerprint:") {
                for j in 0..n {
                    out.push_str(&format!(
                        "a=fingerprint:sha-256 {}\r\n",
                        colon_hex(&Sha256::digest(format!("junk {i} {j}")))
                    ));
                }
            }
        }
        Some(out)
    })
}

/// Replaces every fingerprint with the one of another certificate (the relay's own).
pub fn replace_fingerprints() -> Tamper {
    Arc::new(|_kind: &str, sdp: &str| {
        let theirs = colon_hex(&Sha256::digest(b"the relay's own certificate"));
        let replaced = sdp
            .split_inclusive('\n')
            .map(|line| {
                if line.starts_with("a=fingerprint:") {
                    format!("a=fingerprint:sha-256 {theirs}\r\n")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        Some(replaced)
    })
}

/// Replaces every offer with text that is not SDP at all (answers pass unchanged).
pub fn garble_offers() -> Tamper {
    Arc::new(|kind: &str, sdp: &str| {
        Some(if kind == "offer" {
            "v=0\r\nthis is not a description\r\n".to_owned()
        } else {
            sdp.to_owned()
        })
    })
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The relay; it stops accepting when the test process ends (its threads are detached).
pub struct HostileRelay {
    /// What the peers use as `--server`.
    pub url: String,
}

impl HostileRelay {
    pub fn start(upstream: &str, tamper: Tamper) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let url = format!(
            "ws://{}/ws",
            listener
                .local_addr()
                .expect("invariant: a bound socket has an address")
        );
        let upstream = upstream.to_owned();
        std::thread::Builder::new()
            .name("hostile-relay".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let (upstream, tamper) = (upstream.clone(), tamper.clone());
                    let _ = std::thread::Builder::new()
                        .name("hostile-relay-conn".into())
                        .spawn(move || relay(client, &upstream, &tamper));
                }
            })
            .expect("invariant: the OS can start a thread");
        Self { url }
    }
}

/// Forwards both ways until either side closes; server-to-client descriptions are tampered with.
fn relay(client: TcpStream, upstream: &str, tamper: &Tamper) {
    let Ok(mut client) = tungstenite::accept(client) else {
        return;
    };
    let Ok((mut server, _)) = tungstenite::connect(upstream) else {
        return;
    };
    let tick = Some(Duration::from_millis(5));
    let _ = client.get_ref().set_read_timeout(tick);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = server.get_ref() {
        let _ = s.set_read_timeout(tick);
    }
    loop {
        let up = pump(&mut client, &mut server, &Some);
        let down = pump(&mut server, &mut client, &|m| tamper_message(m, tamper));
        if !(up && down) {
            return;
        }
    }
}

/// Moves at most one message from `from` to `to`; false once either side is gone.
fn pump<A, B>(
    from: &mut WebSocket<A>,
    to: &mut WebSocket<B>,
    change: &dyn Fn(String) -> Option<String>,
) -> bool
where
    A: std::io::Read + std::io::Write,
    B: std::io::Read + std::io::Write,
{
    match from.read() {
        Ok(Message::Text(text)) => match change(text.as_str().to_owned()) {
            Some(text) => to.send(Message::text(text)).is_ok(),
            None => true,
        },
        Ok(Message::Close(_)) => {
            let _ = to.close(None);
            let _ = to.flush();
            false
        }
        Ok(other) => to.send(other).is_ok(),
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            // Nothing to read: push out anything still queued for this side's peer.
            !matches!(to.flush(), Err(tungstenite::Error::ConnectionClosed))
        }
        Err(_) => false,
    }
}

fn tamper_message(text: String, tamper: &Tamper) -> Option<String> {
    let Ok(mut msg) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Some(text);
    };
    if msg["type"] != "signal" {
        return Some(text);
    }
    let kind = msg
        .pointer("/payload/kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    if let Some(sdp) = msg.pointer_mut("/payload/sdp") {
        if let Some(original) = sdp.as_str() {
            *sdp = serde_json::Value::String(tamper(&kind, original)?);
        }
    }
    Some(msg.to_string())
}
