//! The security code: a short number both people read to each other. It is derived from the two
//! DTLS certificate fingerprints in the SDP, which is what the media keys are bound to, so anyone
//! in the middle (even the signaling server) would make the two sides show different codes.

use sha2::{Digest, Sha256};

/// `a=fingerprint:` values found in an SDP, normalized.
pub fn fingerprints(sdp: &str) -> Vec<String> {
    let mut found: Vec<String> = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=fingerprint:"))
        .map(|f| f.trim().to_ascii_uppercase())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Three groups of four digits, the same on both sides of the call.
pub fn security_code(local_sdp: &str, remote_sdp: &str) -> Option<String> {
    let (mut a, mut b) = (fingerprints(local_sdp), fingerprints(remote_sdp));
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // Order-independent: both sides hash the same pair.
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    let digest = Sha256::digest(format!(
        "confab-security-v1\n{}\n{}",
        a.join(","),
        b.join(",")
    ));
    let n =
        u64::from_be_bytes(digest[..8].try_into().expect("invariant: 8 bytes")) % 1_000_000_000_000;
    let digits = format!("{n:012}");
    Some(format!(
        "{} {} {}",
        &digits[..4],
        &digits[4..8],
        &digits[8..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "v=0\r\na=fingerprint:sha-256 AA:BB\r\nm=audio\r\n";
    const B: &str = "v=0\r\na=fingerprint:sha-256 cc:dd\r\n";

    #[test]
    fn both_sides_agree_and_a_middleman_changes_it() {
        let alice = security_code(A, B).unwrap();
        let bob = security_code(B, A).unwrap();
        assert_eq!(alice, bob);
        assert_eq!(alice.len(), 14);
        let mallory = "a=fingerprint:sha-256 EE:FF\r\n";
        assert_ne!(security_code(A, mallory).unwrap(), alice);
        assert_eq!(security_code("v=0", B), None);
    }
}
