//! `confab://` links: `confab://join/kfq-wmzt-pxd?server=wss%3A%2F%2Fhost%2Fws` names a room and,
//! optionally, the signaling server it lives on. Parsed strictly (anything unexpected is refused
//! with a sentence saying what), since a link can come from any web page.

use std::fmt;

use confab_protocol::{RoomCode, RoomCodeError};

/// The scheme the installers register the app for.
pub const SCHEME: &str = "confab";
/// Longer than any real link; a longer one is refused before it is looked at.
pub const MAX_LEN: usize = 2048;

/// A parsed `confab://join/CODE[?server=URL]` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinLink {
    pub room: RoomCode,
    /// `None`: the server the app is set to use.
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("a link is at most {MAX_LEN} characters; this one has {0}")]
    TooLong(usize),
    #[error("not a Confab link (they start with confab://join/)")]
    NotConfab,
    #[error("a Confab link says what to do: confab://join/CODE, not {0:?}")]
    UnknownAction(String),
    #[error("the link's room code is not valid: {0}")]
    BadRoom(#[from] RoomCodeError),
    #[error("the link has no room code (confab://join/CODE)")]
    NoRoom,
    #[error("the link has {0:?} after the room code")]
    ExtraPath(String),
    #[error("the link has an unknown part {0:?} (only server=... is allowed)")]
    UnknownParameter(String),
    #[error("the link names the server twice")]
    DuplicateServer,
    #[error("the link's server {0:?} is not a ws:// or wss:// address")]
    BadServer(String),
    #[error("the link has a broken %-escape")]
    BadEscape,
}

/// Whether `text` is meant as a Confab link (so a bad one gets the link error, not a room-code
/// error).
pub fn looks_like_link(text: &str) -> bool {
    text.trim()
        .get(..SCHEME.len() + 1)
        .is_some_and(|head| head.eq_ignore_ascii_case("confab:"))
}

impl JoinLink {
    pub fn parse(input: &str) -> Result<Self, LinkError> {
        let input = input.trim();
        if input.len() > MAX_LEN {
            return Err(LinkError::TooLong(input.len()));
        }
        let rest = input
            .get(..SCHEME.len() + 3)
            .filter(|head| head.eq_ignore_ascii_case("confab://"))
            .map(|head| &input[head.len()..])
            .ok_or(LinkError::NotConfab)?;
        if rest.contains('#') {
            return Err(LinkError::UnknownParameter("#...".into()));
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (action, room) = path.split_once('/').unwrap_or((path, ""));
        if !action.eq_ignore_ascii_case("join") {
            return Err(LinkError::UnknownAction(action.to_owned()));
        }
        // One trailing slash is what some browsers add; anything more is not ours.
        let room = room.strip_suffix('/').unwrap_or(room);
        if let Some((_, extra)) = room.split_once('/') {
            return Err(LinkError::ExtraPath(extra.to_owned()));
        }
        let room = percent_decode(room)?;
        if room.trim().is_empty() {
            return Err(LinkError::NoRoom);
        }
        // Only letters and the dashes between groups: the forgiving parser of typed codes
        // would also take a pasted link, which has no place inside a link.
        if let Some(c) = room.chars().find(|c| !c.is_ascii_alphabetic() && *c != '-') {
            return Err(LinkError::BadRoom(RoomCodeError::BadCharacter(
                room.clone(),
                c,
            )));
        }
        let room = RoomCode::parse(&room)?;
        let mut server = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key != "server" {
                return Err(LinkError::UnknownParameter(key.to_owned()));
            }
            if server.is_some() {
                return Err(LinkError::DuplicateServer);
            }
            server = Some(check_server(&percent_decode(value)?)?);
        }
        Ok(Self { room, server })
    }
}

/// A `ws://` or `wss://` URL with a host, and nothing in it a URL may not hold.
fn check_server(url: &str) -> Result<String, LinkError> {
    let bad = || LinkError::BadServer(url.to_owned());
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("wss://")
        .or_else(|| lower.strip_prefix("ws://"))
        .ok_or_else(bad)?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty()
        || host.contains('@')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(url.to_owned())
}

/// `%XX` escapes to bytes (which must make UTF-8); `+` stays `+`.
fn percent_decode(text: &str) -> Result<String, LinkError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or(LinkError::BadEscape)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| LinkError::BadEscape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| LinkError::BadEscape)
}

/// Escapes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical form, which `parse` reads back to the same link.
impl fmt::Display for JoinLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://join/{}", self.room)?;
        if let Some(server) = &self.server {
            write!(f, "?server={}", percent_encode(server))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomCode {
        RoomCode::parse("kfq-wmzt-pxd").expect("invariant: a valid code")
    }

    /// `input` parses to `room` and `server`, or fails with an error whose text contains `err`.
    fn check(input: &str, expected: Result<Option<&str>, &str>) {
        let got = JoinLink::parse(input);
        match (expected, got) {
            (Ok(server), Ok(link)) => {
                assert_eq!(link.room, room(), "{input}");
                assert_eq!(link.server.as_deref(), server, "{input}");
            }
            (Err(want), Err(err)) => {
                let text = err.to_string();
                assert!(text.contains(want), "{input}: {text:?} lacks {want:?}");
            }
            (want, got) => panic!("{input}: wanted {want:?}, got {got:?}"),
        }
    }

    #[test]
    fn good_links_parse() {
        check("confab://join/kfq-wmzt-pxd", Ok(None));
        check("  CONFAB://Join/KFQ-WMZT-PXD/ ", Ok(None));
        check("confab://join/kfqwmztpxd", Ok(None));
        check(
            "confab://join/kfq-wmzt-pxd?server=wss%3A%2F%2Fconfab.example.org%2Fws",
            Ok(Some("wss://confab.example.org/ws")),
        );
        check(
            "confab://join/kfq-wmzt-pxd?server=ws://127.0.0.1:8443",
            Ok(Some("ws://127.0.0.1:8443")),
        );
    }

    #[test]
    fn bad_links_say_what_is_wrong() {
        check("https://join/kfq-wmzt-pxd", Err("not a Confab link"));
        check("confab:join/kfq-wmzt-pxd", Err("not a Confab link"));
        check("confab://call/kfq-wmzt-pxd", Err("confab://join/CODE"));
        check("confab://join/", Err("no room code"));
        check("confab://join", Err("no room code"));
        check("confab://join/kfq-wmzt", Err("10 letters"));
        check("confab://join/kfq-wmzt-pxd/x", Err("after the room code"));
        check("confab://join/kfq%20wmzt-pxd", Err("only the letters"));
        check(
            "confab://join/kfq-wmzt-pxd?name=x",
            Err("unknown part \"name\""),
        );
        check("confab://join/kfq-wmzt-pxd#x", Err("unknown part"));
        check(
            "confab://join/kfq-wmzt-pxd?server=ws://a&server=ws://b",
            Err("twice"),
        );
        for server in [
            "http://host",
            "ws://",
            "wss://user:pw@host",
            "ws://ho%20st",
            "javascript:alert(1)",
        ] {
            check(
                &format!("confab://join/kfq-wmzt-pxd?server={server}"),
                Err("not a ws:// or wss://"),
            );
        }
        check(
            "confab://join/kfq-wmzt-pxd?server=ws://h%2",
            Err("%-escape"),
        );
        check(
            "confab://join/kfq-wmzt-pxd?server=ws://h%ff",
            Err("%-escape"),
        );
        check(
            &format!("confab://join/{}", "a".repeat(3000)),
            Err("at most"),
        );
    }

    #[test]
    fn a_link_reads_back_from_its_text() {
        for server in [None, Some("wss://confab.example.org:8443/ws?x=1&y=2")] {
            let link = JoinLink {
                room: room(),
                server: server.map(str::to_owned),
            };
            assert_eq!(JoinLink::parse(&link.to_string()), Ok(link));
        }
    }

    #[test]
    fn only_confab_links_look_like_links() {
        assert!(looks_like_link("confab://join/x"));
        assert!(looks_like_link(" Confab:whatever"));
        assert!(!looks_like_link("kfq-wmzt-pxd"));
        assert!(!looks_like_link("https://host/join/kfq-wmzt-pxd"));
        assert!(!looks_like_link("confa"));
    }
}
