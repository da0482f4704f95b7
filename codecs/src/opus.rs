//! Opus at 48 kHz mono in 20 ms frames: an encoder tuned for speech with in-band FEC, and a
//! decoder that can recover a lost frame from the next one (FEC) or conceal it (PLC).

use super::CodecError;
use confab_media::audio::FRAME_SAMPLES;
use confab_media::SAMPLE_RATE_HZ;

/// Bytes an encoded frame may take (far above what 20 ms at our bitrates needs).
const MAX_PACKET: usize = 1500;

fn err(e: opus::Error) -> CodecError {
    CodecError::Opus(e.to_string())
}

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
        // FEC is only spent when the encoder expects loss; 10% keeps it on for ordinary networks.
        encoder.set_packet_loss_perc(10).map_err(err)?;
        Ok(Self {
            encoder,
            out: vec![0; MAX_PACKET],
        })
    }

    /// Encodes one 20 ms frame (960 samples).
    pub fn encode(&mut self, frame: &[f32]) -> Result<Vec<u8>, CodecError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(CodecError::Opus(format!(
                "a frame is {FRAME_SAMPLES} samples, not {}",
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

pub struct OpusDecoder {
    decoder: opus::Decoder,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            decoder: opus::Decoder::new(SAMPLE_RATE_HZ, opus::Channels::Mono).map_err(err)?,
        })
    }

    /// Decodes a packet into `out` (960 samples for our 20 ms frames).
    pub fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> Result<usize, CodecError> {
        self.decoder.decode_float(packet, out, false).map_err(err)
    }

    /// Recovers the frame *before* `next_packet` from the FEC data it carries.
    pub fn recover(&mut self, next_packet: &[u8], out: &mut [f32]) -> Result<usize, CodecError> {
        self.decoder
            .decode_float(next_packet, &mut out[..FRAME_SAMPLES], true)
            .map_err(err)
    }

    /// Packet-loss concealment: a plausible continuation when nothing arrived.
    pub fn conceal(&mut self, out: &mut [f32]) -> Result<usize, CodecError> {
        self.decoder
            .decode_float(&[], &mut out[..FRAME_SAMPLES], false)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::{audio::rms_dbfs, test_signal};

    #[test]
    fn round_trip_fec_and_concealment() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut frame = vec![0f32; FRAME_SAMPLES];
        let mut out = vec![0f32; FRAME_SAMPLES];
        let mut packets = Vec::new();
        for n in 0..50u64 {
            test_signal::fill(&mut frame, 300_000 + n * 20_000); // the 440 Hz tone at 0.2
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
        assert_eq!(dec.recover(&packets[41], &mut out).unwrap(), FRAME_SAMPLES);
        assert!(rms_dbfs(&out) > -25.0, "FEC gave audio: {}", rms_dbfs(&out));
        dec.decode(&packets[41], &mut out).unwrap();
        // Two lost in a row: conceal.
        assert_eq!(dec.conceal(&mut out).unwrap(), FRAME_SAMPLES);
        assert!(enc.encode(&frame[..100]).is_err());
        // Garbage from the network: an error or noise, never a panic.
        let _ = dec.decode(&[0xFF; 3], &mut out);
    }
}
