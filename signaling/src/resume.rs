//! Resume tokens: the room, id and name of a seat, signed with the server's key (HMAC-SHA1), so
//! that the server, or a restarted one with the same key, can give the seat back to whoever
//! shows the token after a dropped socket. Tokens hold no secret; they are bearer credentials
//! for one seat.

use base64::Engine as _;
use confab_protocol::{PeerId, PeerInfo, RoomCode};
use hmac::{Hmac, Mac};
use sha1::Sha1;

fn mac(key: &[u8], body: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
        .expect("invariant: HMAC accepts keys of any length");
    mac.update(body.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The token for `info`'s seat in room `code`.
pub fn token(key: &[u8], code: &RoomCode, info: &PeerInfo) -> String {
    let name = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(info.name.as_bytes());
    let body = format!("{code}.{}.{name}", info.id.0);
    let signature = mac(key, &body);
    format!("{body}.{signature}")
}

/// The seat a token names, if `key` signed it.
pub fn verify(key: &[u8], token: &str) -> Option<(RoomCode, PeerInfo)> {
    let (body, signature) = token.rsplit_once('.')?;
    // Compared as MACs, not as strings, so the time taken says nothing about the right one.
    let mut check = <Hmac<Sha1> as Mac>::new_from_slice(key).ok()?;
    check.update(body.as_bytes());
    let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .ok()?;
    check.verify_slice(&given).ok()?;
    let mut parts = body.split('.');
    let code = RoomCode::parse(parts.next()?).ok()?;
    let id = PeerId(parts.next()?.parse().ok()?);
    let name = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts.next()?)
        .ok()?;
    let name = String::from_utf8(name).ok()?;
    parts
        .next()
        .is_none()
        .then_some((code, PeerInfo { id, name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gives_back_its_seat_only_under_the_same_key() {
        let code = RoomCode::parse("kfq-wmzt-pxd").unwrap();
        let info = PeerInfo {
            id: PeerId(7),
            name: "Ada. L".into(),
        };
        let t = token(b"key", &code, &info);
        assert_eq!(verify(b"key", &t), Some((code.clone(), info.clone())));
        assert_eq!(verify(b"other key", &t), None, "another server's token");
        let forged = t.replacen(".7.", ".8.", 1);
        assert_ne!(forged, t);
        assert_eq!(verify(b"key", &forged), None, "a changed id");
        for junk in ["", ".", "a.b.c.d", "kfq-wmzt-pxd.7.QQ"] {
            assert_eq!(verify(b"key", junk), None, "{junk:?}");
        }
    }
}
