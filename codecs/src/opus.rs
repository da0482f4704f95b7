//! Opus at 48 kHz mono in 10 or 20 ms frames: an encoder tuned for speech with in-band FEC, and a
//! decoder that can recover a lost frame from the next one (FEC) or conceal it (PLC).

use super::CodecError;
use confab_media::audio::{BLOCK_SAMPLES, FRAME_SAMPLES};
use confab_media::SAMPLE_RATE_HZ;

/// Bytes an encoded frame may take (far above what 20 ms at our bitrates needs).
const MAX_PACKET: usize = 1500;

fn err(e: opus::Error) -> CodecError {
    CodecError::Opus(e.to_string())
}

/// The loss FEC protects against until the network reports any: FEC is only spent when the
/// encoder expects loss, and 10% keeps it on for ordinary networks.
pub const DEFAULT_EXPECTED_LOSS_PERCENT: u8 = 10;

pub struct OpusEncoder {
    encoder: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    pub fn new(bitrate_bps: i32) -> Result<Self, CodecError> {
        let mut encoder = opus::Encoder::new(
            SAMPLE_RATE_HZ,
            opus::Channels::Mono,
            opus::Application::Voip,
        )
        .map_err(err)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(bitrate_bps))
            .map_err(err)?;
        encoder.set_inband_fec(true).map_err(err)?;
        encoder
            .set_packet_loss_perc(i32::from(DEFAULT_EXPECTED_LOSS_PERCENT))
            .map_err(err)?;
        Ok(Self {
            encoder,
            out: vec![0; MAX_PACKET],
        })
    }

    /// How much loss to protect against (0-100 %): in-band FEC spends bits in proportion, and none
    /// at 0. Follows the loss the network reports.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), CodecError> {
        self.encoder
            .set_packet_loss_perc(i32::from(percent.min(100)))
            .map_err(err)
    }

    /// Encodes one 10 ms (480 samples) or 20 ms (960 samples) frame.
    pub fn encode(&mut self, frame: &[f32]) -> Result<Vec<u8>, CodecError> {
        if frame.len() != BLOCK_SAMPLES && frame.len() != FRAME_SAMPLES {
            return Err(CodecError::Opus(format!(
                "a frame is {BLOCK_SAMPLES} or {FRAME_SAMPLES} samples, not {}",
                frame.len()
            )));
        }
        let n = self
            .encoder
            .encode_float(frame, &mut self.out)
            .map_err(err)?;
        Ok(self.out[..n].to_vec())
    }
}

/// The samples (at 48 kHz) a packet decodes to, from its TOC byte; `None` when malformed.
pub fn packet_samples(packet: &[u8]) -> Option<usize> {
    opus::packet::get_nb_samples(packet, SAMPLE_RATE_HZ)
        .ok()
        .filter(|&n| n > 0)
}

/// Whether `packet` carries in-band FEC (LBRR) data for the frame before it: only then can
/// `OpusDecoder::recover` rebuild that frame; otherwise it would only conceal.
pub fn has_fec(packet: &[u8]) -> bool {
    let Ok(len) = i32::try_from(packet.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    // SAFETY: `opus_packet_has_lbrr` reads exactly `len` bytes from the pointer, which points at
    // `packet`'s `len` initialized bytes, borrowed for the whole call; it keeps no pointer and
    // returns an error code (negative) for malformed packets instead of reading past `len`.
    #[allow(unsafe_code)]
    let has = unsafe { opusic_sys::opus_packet_has_lbrr(packet.as_ptr(), len) };
    has > 0
}

pub struct OpusDecoder {
    decoder: opus::Decoder,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            decoder: opus::Decoder::new(SAMPLE_RATE_HZ, opus::Channels::Mono).map_err(err)?,
        })
    }

    /// Decodes a packet into `out` (480 or 960 samples for our frames; up to 5760 for 120 ms).
    pub fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> Result<usize, CodecError> {
        self.decoder.decode_float(packet, out, false).map_err(err)
    }

    /// Recovers the `samples` long frame *before* `next_packet` from the FEC data it carries.
    pub fn recover(
        &mut self,
        next_packet: &[u8],
        out: &mut [f32],
        samples: usize,
    ) -> Result<usize, CodecError> {
        let out = out.get_mut(..samples).ok_or_else(|| too_short(samples))?;
        self.decoder
            .decode_float(next_packet, out, true)
            .map_err(err)
    }

    /// Packet-loss concealment: `samples` of plausible continuation when nothing arrived.
    pub fn conceal(&mut self, out: &mut [f32], samples: usize) -> Result<usize, CodecError> {
        let out = out.get_mut(..samples).ok_or_else(|| too_short(samples))?;
        self.decoder.decode_float(&[], out, false).map_err(err)
    }
}

fn too_short(samples: usize) -> CodecError {
    CodecError::Opus(format!("the output holds fewer than {samples} samples"))
}

#[cfg(test)]
mod frame_size_tests {
    use super::*;

    #[test]
    fn ten_and_twenty_ms_frames_decode_to_their_length() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = vec![0f32; FRAME_SAMPLES * 6];
        for samples in [BLOCK_SAMPLES, FRAME_SAMPLES] {
            let packet = enc.encode(&vec![0.1; samples]).unwrap();
            assert_eq!(packet_samples(&packet), Some(samples));
            assert_eq!(dec.decode(&packet, &mut out).unwrap(), samples);
            assert_eq!(dec.conceal(&mut out, samples).unwrap(), samples);
            assert_eq!(dec.recover(&packet, &mut out, samples).unwrap(), samples);
        }
        assert!(dec.conceal(&mut out[..10], BLOCK_SAMPLES).is_err());
        assert_eq!(packet_samples(&[]), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::{audio::rms_dbfs, test_signal};

    #[test]
    fn the_test_signals_markers_read_their_own_slot_through_opus_at_any_phase() {
        // The receiver reads mouth-to-ear latency off the markers in what it plays. Its detection
        // windows sit where the playout blocks put them, the same for a whole call, and Opus
        // smears a burst's onset: at no phase may a burst read as another slot's (a whole 200
        // ms off). Played as decoded, the latency is the codec's own delay (6.5 ms lookahead),
        // read a window or two late where the smeared onset is no clear reading.
        for voice in [test_signal::Voice::First, test_signal::Voice::Second] {
            for phase_us in (0..2_500).step_by(100) {
                let mut enc = OpusEncoder::new(32_000).unwrap();
                let mut dec = OpusDecoder::new().unwrap();
                let mut detector = test_signal::MarkerDetector::default();
                let mut frame = vec![0f32; BLOCK_SAMPLES];
                let mut out = vec![0f32; BLOCK_SAMPLES];
                let mut found = Vec::new();
                let t0 = 1_700_000_000_000_000u64 + phase_us;
                for n in 0..300u64 {
                    let t = t0 + n * 10_000;
                    voice.fill(&mut frame, t);
                    let packet = enc.encode(&frame).unwrap();
                    let samples = dec.decode(&packet, &mut out).unwrap();
                    found.extend(detector.push(&out[..samples], t));
                }
                assert!(found.len() >= 13, "{voice:?} at {phase_us} µs: {found:?}");
                assert!(
                    found.iter().all(|us| (2_000..=20_000).contains(us)),
                    "{voice:?} at {phase_us} µs: {found:?}"
                );
            }
        }
    }

    #[test]
    fn round_trip_fec_and_concealment() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut frame = vec![0f32; FRAME_SAMPLES];
        let mut out = vec![0f32; FRAME_SAMPLES];
        let mut packets = Vec::new();
        for n in 0..50u64 {
            test_signal::Voice::First.fill(&mut frame, 300_000 + n * 20_000); // the 440 Hz tone at 0.2
            packets.push(enc.encode(&frame).unwrap());
        }
        assert!(packets.iter().all(|p| !p.is_empty() && p.len() < 200));
        for p in &packets[..40] {
            assert_eq!(dec.decode(p, &mut out).unwrap(), FRAME_SAMPLES);
        }
        let level = rms_dbfs(&out);
        assert!(
            (level - rms_dbfs(&frame)).abs() < 2.0,
            "decoded level {level} dBFS"
        );
        // Packet 40 is lost: recover it from packet 41's FEC, then play 41 itself.
        assert_eq!(
            dec.recover(&packets[41], &mut out, FRAME_SAMPLES).unwrap(),
            FRAME_SAMPLES
        );
        assert!(rms_dbfs(&out) > -25.0, "FEC gave audio: {}", rms_dbfs(&out));
        dec.decode(&packets[41], &mut out).unwrap();
        // Two lost in a row: conceal.
        assert_eq!(dec.conceal(&mut out, FRAME_SAMPLES).unwrap(), FRAME_SAMPLES);
        assert!(enc.encode(&frame[..100]).is_err());
        // Garbage from the network: an error or noise, never a panic.
        let _ = dec.decode(&[0xFF; 3], &mut out);
        assert!(!has_fec(&[0xFF; 3]) && !has_fec(&[]));
    }

    /// A frame unlike its neighbours (1.5 kHz between frames of 400 Hz) is lost: FEC rebuilds its
    /// tone from the next packet, concealment can only continue the previous frame's.
    #[test]
    fn fec_recovers_what_concealment_cannot() {
        let tone = |hz: f64, n: usize| -> Vec<f32> {
            (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (n * FRAME_SAMPLES + i) as f64 / f64::from(SAMPLE_RATE_HZ);
                    (0.3 * (std::f64::consts::TAU * hz * t).sin()) as f32
                })
                .collect()
        };
        let lost = 30;
        let encode_all = |loss_percent: u8| -> Vec<Vec<u8>> {
            let mut enc = OpusEncoder::new(32_000).unwrap();
            enc.set_expected_loss(loss_percent).unwrap();
            (0..40)
                .map(|n| {
                    let hz = if n == lost { 1500.0 } else { 400.0 };
                    enc.encode(&tone(hz, n)).unwrap()
                })
                .collect()
        };
        let power_1500 = |packets: &[Vec<u8>], fec: bool| -> f64 {
            let mut dec = OpusDecoder::new().unwrap();
            let mut out = vec![0f32; FRAME_SAMPLES];
            for p in &packets[..lost] {
                dec.decode(p, &mut out).unwrap();
            }
            if fec {
                dec.recover(&packets[lost + 1], &mut out, FRAME_SAMPLES)
                    .unwrap();
            } else {
                dec.conceal(&mut out, FRAME_SAMPLES).unwrap();
            }
            confab_media::audio::tone_power(&out, 1500.0, SAMPLE_RATE_HZ)
        };
        let protected = encode_all(20);
        assert!(
            has_fec(&protected[lost + 1]),
            "20% expected loss: FEC is sent"
        );
        let recovered = power_1500(&protected, true);
        let concealed = power_1500(&protected, false);
        let db = 10.0 * (recovered / concealed.max(1e-12)).log10();
        println!("1.5 kHz in the lost frame: FEC {recovered:.2e}, concealment {concealed:.2e} ({db:.1} dB apart)");
        assert!(
            db > 10.0,
            "FEC must rebuild the lost tone: only {db:.1} dB over concealment"
        );
        // Without expected loss the encoder sends no FEC, and `has_fec` says so.
        let unprotected = encode_all(0);
        assert!(
            !unprotected.iter().any(|p| has_fec(p)),
            "no FEC at 0% expected loss"
        );
    }
}
