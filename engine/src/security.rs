//! The security code two people read to each other: a short number derived from the two DTLS
//! certificates the connection actually verified and from two random values exchanged
//! commit-then-reveal over the data channel, so that no one in the middle can choose what either
//! side shows (see SECURITY.md for the construction and its limits).

use sha2::{Digest, Sha256};

/// Bytes of the random value each side contributes.
pub const NONCE_BYTES: usize = 32;

pub type Nonce = [u8; NONCE_BYTES];

/// `sha-256 AB:CD:...` of a DER certificate: the form SDP's `a=fingerprint` uses.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    let hex: Vec<String> = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!("sha-256 {}", hex.join(":"))
}

/// The first `a=fingerprint:sha-256` of an SDP (session level, else the first section's, which
/// is the one a BUNDLEd transport uses), normalized; `None` when there is none. Used for our own
/// description only: the remote side's comes from the certificate DTLS verified.
pub fn first_sha256_fingerprint(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|line| {
        let value = line.trim().strip_prefix("a=fingerprint:")?;
        let (algorithm, digest) = value.trim().split_once(' ')?;
        algorithm
            .eq_ignore_ascii_case("sha-256")
            .then(|| format!("sha-256 {}", digest.trim().to_ascii_uppercase()))
    })
}

/// Three groups of four digits, the same on both sides of the call: a SHA-256 over both
/// (fingerprint, nonce) pairs in sorted order, so that the two sides hash the same input.
pub fn security_code(local: (&str, &Nonce), remote: (&str, &Nonce)) -> String {
    let (mut first, mut second) = (
        (local.0, hex::encode(local.1)),
        (remote.0, hex::encode(remote.1)),
    );
    if first > second {
        std::mem::swap(&mut first, &mut second);
    }
    let digest = Sha256::digest(format!(
        "confab-security-v2\n{}\n{}\n{}\n{}",
        first.0, first.1, second.0, second.1
    ));
    let n =
        u64::from_be_bytes(digest[..8].try_into().expect("invariant: 8 bytes")) % 1_000_000_000_000;
    let digits = format!("{n:012}");
    format!("{} {} {}", &digits[..4], &digits[4..8], &digits[8..])
}

/// SHA-256 of a nonce, as lowercase hex: what a side sends before it reveals the nonce.
pub fn commitment(nonce: &Nonce) -> String {
    hex::encode(Sha256::digest(nonce))
}

/// Why the exchange failed; the call goes on without a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the other side revealed its random value before committing to it")]
    RevealBeforeCommit,
    #[error("the other side's random value does not match its commitment")]
    CommitmentMismatch,
    #[error("the other side sent a malformed commitment or random value")]
    Malformed,
    #[error("the other side committed twice")]
    CommittedTwice,
}

/// Where the exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SasState {
    Pending,
    /// Both values are known and checked: (ours, theirs).
    Done(Nonce, Nonce),
    Failed(SasError),
}

/// One side of the commit-then-reveal exchange, as a pure state machine: it says what to send
/// and when. We send our commitment first, and reveal our value only once we hold the other
/// side's commitment, so neither side (nor anyone between them) can pick its value after seeing
/// the other's.
#[derive(Debug)]
pub struct SasExchange {
    nonce: Nonce,
    committed: bool,
    peer_commitment: Option<[u8; 32]>,
    revealed: bool,
    state: SasState,
}

impl SasExchange {
    pub fn new(nonce: Nonce) -> Self {
        Self {
            nonce,
            committed: false,
            peer_commitment: None,
            revealed: false,
            state: SasState::Pending,
        }
    }

    /// A fresh random value for this call.
    pub fn random() -> Self {
        Self::new(rand::random())
    }

    pub fn state(&self) -> &SasState {
        &self.state
    }

    /// Our commitment, the first time the channel is there to carry it (`None` after that).
    pub fn commit(&mut self) -> Option<String> {
        if self.committed {
            return None;
        }
        self.committed = true;
        Some(commitment(&self.nonce))
    }

    /// The other side's commitment arrived: our value to reveal (hex), once we have committed.
    pub fn on_commit(&mut self, hash_hex: &str) -> Option<String> {
        if self.state != SasState::Pending {
            return None;
        }
        if self.peer_commitment.is_some() {
            self.state = SasState::Failed(SasError::CommittedTwice);
            return None;
        }
        match decode32(hash_hex) {
            Some(hash) => self.peer_commitment = Some(hash),
            None => {
                self.state = SasState::Failed(SasError::Malformed);
                return None;
            }
        }
        self.reveal()
    }

    /// Our value to reveal, if we have committed and hold theirs and have not revealed yet.
    pub fn reveal(&mut self) -> Option<String> {
        if !self.committed || self.peer_commitment.is_none() || self.revealed {
            return None;
        }
        if matches!(self.state, SasState::Failed(_)) {
            return None;
        }
        self.revealed = true;
        Some(hex::encode(self.nonce))
    }

    /// The other side's value arrived: checked against its commitment.
    pub fn on_reveal(&mut self, nonce_hex: &str) -> &SasState {
        if self.state != SasState::Pending {
            return &self.state;
        }
        self.state = match (self.peer_commitment, decode32(nonce_hex)) {
            (None, _) => SasState::Failed(SasError::RevealBeforeCommit),
            (_, None) => SasState::Failed(SasError::Malformed),
            (Some(hash), Some(theirs)) if Sha256::digest(theirs)[..] == hash[..] => {
                SasState::Done(self.nonce, theirs)
            }
            _ => SasState::Failed(SasError::CommitmentMismatch),
        };
        &self.state
    }
}

fn decode32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    hex::decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FA: &str = "sha-256 AA:BB";
    const FB: &str = "sha-256 CC:DD";

    /// Runs the exchange between two sides, delivering messages in the order given.
    fn exchange(a: &mut SasExchange, b: &mut SasExchange) {
        let ca = a.commit().unwrap();
        let cb = b.commit().unwrap();
        let ra = a.on_commit(&cb).unwrap();
        let rb = b.on_commit(&ca).unwrap();
        a.on_reveal(&rb);
        b.on_reveal(&ra);
    }

    #[test]
    fn both_sides_agree_and_every_input_changes_the_code() {
        let (na, nb) = ([1u8; 32], [2u8; 32]);
        let alice = security_code((FA, &na), (FB, &nb));
        let bob = security_code((FB, &nb), (FA, &na));
        assert_eq!(alice, bob);
        assert_eq!(alice.len(), 14);
        assert!(alice.chars().all(|c| c.is_ascii_digit() || c == ' '));
        assert_ne!(security_code(("sha-256 EE:FF", &na), (FB, &nb)), alice);
        assert_ne!(security_code((FA, &[3u8; 32]), (FB, &nb)), alice);
        assert_ne!(security_code((FA, &na), (FB, &[3u8; 32])), alice);
        // The nonces are bound to their fingerprints: swapping them changes the code.
        assert_ne!(security_code((FA, &nb), (FB, &na)), alice);
    }

    #[test]
    fn a_known_vector_shared_with_the_web_client() {
        // signaling/web/confab.js computes the same (tests/e2e/browser.rs checks this value).
        let code = security_code((FA, &[1u8; 32]), (FB, &[2u8; 32]));
        assert_eq!(code, KNOWN_CODE);
    }
    const KNOWN_CODE: &str = "3795 3951 4983";

    #[test]
    fn fingerprints_from_certificates_and_descriptions() {
        let fp = certificate_fingerprint(b"certificate");
        assert!(fp.starts_with("sha-256 "));
        assert_eq!(fp.len(), "sha-256 ".len() + 32 * 3 - 1);
        let sdp = format!(
            "v=0\r\na=fingerprint:sha-1 00:11\r\na=fingerprint:sha-256 {}\r\na=fingerprint:sha-256 FF:FF\r\n",
            fp["sha-256 ".len()..].to_ascii_lowercase()
        );
        assert_eq!(first_sha256_fingerprint(&sdp), Some(fp));
        assert_eq!(first_sha256_fingerprint("v=0\r\nm=audio\r\n"), None);
    }

    #[test]
    fn the_exchange_completes_in_any_delivery_order() {
        let (mut a, mut b) = (SasExchange::new([1; 32]), SasExchange::new([2; 32]));
        exchange(&mut a, &mut b);
        assert_eq!(a.state(), &SasState::Done([1; 32], [2; 32]));
        assert_eq!(b.state(), &SasState::Done([2; 32], [1; 32]));

        // Their commitment arrives before our channel let us commit: we reveal once we commit.
        let (mut a, mut b) = (SasExchange::new([1; 32]), SasExchange::new([2; 32]));
        let cb = b.commit().unwrap();
        assert_eq!(
            a.on_commit(&cb),
            None,
            "no reveal before our own commitment"
        );
        let ca = a.commit().unwrap();
        let ra = a.reveal().unwrap();
        let rb = b.on_commit(&ca).unwrap();
        assert!(matches!(a.on_reveal(&rb), SasState::Done(..)));
        assert!(matches!(b.on_reveal(&ra), SasState::Done(..)));
        assert_eq!(a.commit(), None, "one commitment per call");
        assert_eq!(a.reveal(), None, "one reveal per call");
    }

    #[test]
    fn cheating_is_caught() {
        // A value that does not match the commitment.
        let mut a = SasExchange::new([1; 32]);
        a.commit();
        a.on_commit(&commitment(&[2; 32]));
        assert_eq!(
            a.on_reveal(&hex::encode([3u8; 32])),
            &SasState::Failed(SasError::CommitmentMismatch)
        );
        // A value revealed without a commitment first (a side that wants to see ours first).
        let mut a = SasExchange::new([1; 32]);
        a.commit();
        assert_eq!(
            a.on_reveal(&hex::encode([3u8; 32])),
            &SasState::Failed(SasError::RevealBeforeCommit)
        );
        // Garbage, and a second commitment (a side trying again after seeing ours).
        let mut a = SasExchange::new([1; 32]);
        a.commit();
        assert_eq!(a.on_commit("zz"), None);
        assert_eq!(a.state(), &SasState::Failed(SasError::Malformed));
        let mut a = SasExchange::new([1; 32]);
        a.commit();
        assert!(a.on_commit(&commitment(&[2; 32])).is_some());
        assert_eq!(a.on_commit(&commitment(&[4; 32])), None);
        assert_eq!(a.state(), &SasState::Failed(SasError::CommittedTwice));
        // Once failed, a matching value does not revive it.
        assert_eq!(
            a.on_reveal(&hex::encode([2u8; 32])),
            &SasState::Failed(SasError::CommittedTwice)
        );
    }
}
