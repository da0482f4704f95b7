//! RTP payloads of one H.264 access unit (RFC 6184, packetization mode 1: single NAL units,
//! STAP-A, FU-A) back to an Annex-B byte stream. Written here rather than taken from `rtc` so that
//! every malformed payload a remote peer can send is an error, never a panic.

use thiserror::Error;

const STAP_A: u8 = 24;
const FU_A: u8 = 28;
const NAL_IDR: u8 = 5;
const START_CODE: [u8; 4] = [0, 0, 0, 1];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DepacketizeError {
    #[error("empty RTP payload")]
    Empty,
    #[error("STAP-A aggregate is truncated")]
    TruncatedStapA,
    #[error("FU-A fragment is truncated")]
    TruncatedFuA,
    #[error("FU-A fragment without its start")]
    FuWithoutStart,
    #[error("FU-A unit never ended")]
    UnfinishedFu,
    #[error("unsupported NAL unit type {0} (only packetization mode 1 is supported)")]
    Unsupported(u8),
}

/// Whether an RTP payload is part of a keyframe: an IDR slice (whole, aggregated or a fragment of
/// one) or the parameter sets sent with it. Lets a receiver that waits for a keyframe see one
/// arriving before its last packet is in.
pub fn carries_keyframe(payload: &[u8]) -> bool {
    const SPS: u8 = 7;
    const PPS: u8 = 8;
    let nal_type = match payload.first().map(|h| h & 0x1F) {
        // An aggregate: its first unit (parameter sets lead a keyframe).
        Some(STAP_A) => payload.get(3).map(|h| h & 0x1F),
        Some(FU_A) => payload.get(1).map(|fu| fu & 0x1F),
        other => other,
    };
    matches!(nal_type, Some(NAL_IDR | SPS | PPS))
}

/// Whether an RTP payload begins with a sequence parameter set (alone or first in a STAP-A): the
/// first packet of a keyframe as encoders send it (SPS, PPS, then the IDR slice), so nothing
/// before it is needed to decode what follows.
pub fn begins_with_sps(payload: &[u8]) -> bool {
    const SPS: u8 = 7;
    let nal_type = match payload.first().map(|h| h & 0x1F) {
        Some(STAP_A) => payload.get(3).map(|h| h & 0x1F),
        other => other,
    };
    nal_type == Some(SPS)
}

/// An access unit in Annex-B form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub annexb: Vec<u8>,
    /// It contains an IDR slice (decoding can start here).
    pub keyframe: bool,
}

/// Reassembles the payloads of one frame, in sequence order.
pub fn depacketize<'a>(
    payloads: impl IntoIterator<Item = &'a [u8]>,
) -> Result<AccessUnit, DepacketizeError> {
    let mut out = Vec::new();
    let mut keyframe = false;
    let mut in_fu = false;
    let push_nal = |out: &mut Vec<u8>, keyframe: &mut bool, nal: &[u8]| {
        if nal.first().is_some_and(|h| h & 0x1F == NAL_IDR) {
            *keyframe = true;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
    };
    for payload in payloads {
        // Padding-only packets carry nothing.
        let Some(&header) = payload.first() else {
            continue;
        };
        match header & 0x1F {
            1..=23 => {
                if in_fu {
                    return Err(DepacketizeError::UnfinishedFu);
                }
                push_nal(&mut out, &mut keyframe, payload);
            }
            STAP_A => {
                if in_fu {
                    return Err(DepacketizeError::UnfinishedFu);
                }
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    if rest.len() < 2 {
                        return Err(DepacketizeError::TruncatedStapA);
                    }
                    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    let nal = rest
                        .get(2..2 + len)
                        .ok_or(DepacketizeError::TruncatedStapA)?;
                    if nal.is_empty() {
                        return Err(DepacketizeError::TruncatedStapA);
                    }
                    push_nal(&mut out, &mut keyframe, nal);
                    rest = &rest[2 + len..];
                }
            }
            FU_A => {
                let &fu_header = payload.get(1).ok_or(DepacketizeError::TruncatedFuA)?;
                let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
                if start {
                    if in_fu {
                        return Err(DepacketizeError::UnfinishedFu);
                    }
                    let nal_header = (header & 0xE0) | (fu_header & 0x1F);
                    if nal_header & 0x1F == NAL_IDR {
                        keyframe = true;
                    }
                    out.extend_from_slice(&START_CODE);
                    out.push(nal_header);
                    in_fu = true;
                } else if !in_fu {
                    return Err(DepacketizeError::FuWithoutStart);
                }
                out.extend_from_slice(&payload[2..]);
                if end {
                    in_fu = false;
                }
            }
            other => return Err(DepacketizeError::Unsupported(other)),
        }
    }
    if in_fu {
        return Err(DepacketizeError::UnfinishedFu);
    }
    if out.is_empty() {
        return Err(DepacketizeError::Empty);
    }
    Ok(AccessUnit {
        annexb: out,
        keyframe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payloads: &[&[u8]], expected: Result<(&[u8], bool), DepacketizeError>) {
        let got = depacketize(payloads.iter().copied());
        match expected {
            Ok((annexb, keyframe)) => {
                let au = got.unwrap_or_else(|e| panic!("{payloads:?}: {e}"));
                assert_eq!(
                    (au.annexb.as_slice(), au.keyframe),
                    (annexb, keyframe),
                    "{payloads:?}"
                );
            }
            Err(e) => assert_eq!(got.err(), Some(e), "{payloads:?}"),
        }
    }

    #[test]
    fn keyframe_packets_are_known_by_themselves() {
        // An IDR slice alone, SPS and PPS aggregated, the middle of a fragmented IDR slice.
        assert!(carries_keyframe(&[0x65, 1]));
        assert!(carries_keyframe(&[0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1]));
        assert!(carries_keyframe(&[0x7C, 0x05, 9]));
        // A P slice, its fragment, an aggregate of P slices, padding and garbage.
        assert!(!carries_keyframe(&[0x41, 1]));
        assert!(!carries_keyframe(&[0x7C, 0x81, 9]));
        assert!(!carries_keyframe(&[0x78, 0, 2, 0x41, 1]));
        assert!(!carries_keyframe(&[]));
        assert!(!carries_keyframe(&[0x78, 0]));
        assert!(!carries_keyframe(&[0x7C]));
    }

    #[test]
    fn the_three_packet_kinds() {
        check(&[&[0x41, 1, 2]], Ok((&[0, 0, 0, 1, 0x41, 1, 2], false)));
        // STAP-A with SPS (7) and PPS (8), then an IDR (5) in one piece.
        check(
            &[&[0x78, 0, 2, 0x67, 9, 0, 1, 0x68], &[0x65, 7]],
            Ok((
                &[0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 7],
                true,
            )),
        );
        // FU-A: an IDR in three fragments.
        check(
            &[&[0x7C, 0x85, 1], &[0x7C, 0x05, 2], &[0x7C, 0x45, 3]],
            Ok((&[0, 0, 0, 1, 0x65, 1, 2, 3], true)),
        );
    }

    #[test]
    fn malformed_payloads_are_errors() {
        check(&[&[]], Err(DepacketizeError::Empty));
        check(&[&[0x78, 0]], Err(DepacketizeError::TruncatedStapA));
        check(&[&[0x78, 0, 9, 1]], Err(DepacketizeError::TruncatedStapA));
        check(&[&[0x78, 0, 0]], Err(DepacketizeError::TruncatedStapA));
        check(&[&[0x7C]], Err(DepacketizeError::TruncatedFuA));
        check(&[&[0x7C, 0x05, 2]], Err(DepacketizeError::FuWithoutStart));
        check(&[&[0x7C, 0x85, 1]], Err(DepacketizeError::UnfinishedFu));
        check(
            &[&[0x7C, 0x85, 1], &[0x41, 1]],
            Err(DepacketizeError::UnfinishedFu),
        );
        check(&[&[0x7D, 0x85, 1]], Err(DepacketizeError::Unsupported(29)));
        check(&[&[0x00, 1]], Err(DepacketizeError::Unsupported(0)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 12345u32;
        for _ in 0..20_000 {
            let len = (seed % 12) as usize;
            let payload: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = depacketize([payload.as_slice(), payload.as_slice()]);
        }
    }
}
