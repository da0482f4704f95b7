//! An interceptor that hands inbound keyframe requests (PLI, FIR) to the application, so the video
//! sender can answer them with a keyframe. webrtc-rs ends inbound RTCP inside the interceptor chain
//! unless an interceptor marks it for delivery; everything else (reports, NACK, TWCC) is for the
//! interceptors and stays there, except its attributes (the congestion controller's new target),
//! which rtc reads from an emptied packet. It goes last in the chain (nearest the application).

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Chain position: above every built-in slot (they are spaced a thousand apart from 1000).
pub const SLOT: usize = 50_000;

#[derive(Default)]
pub struct KeyframeForwarder {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

/// Whether an RTCP packet asks for a keyframe.
pub fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                if msg.message.attributes.is_empty() {
                    // Not for the application; the interceptors below have acted on it.
                    return Ok(());
                }
                // It carries something for rtc (TargetBitrateChanged on TWCC feedback): the
                // terminus turns it into an empty carrier and rtc records the target in the
                // outbound-rtp stats. Dropping it here would lose the target.
                msg.message.packet = Packet::Rtcp(Vec::new());
            } else {
                msg.message.packet = Packet::Rtcp(requests);
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::shared::{TransportContext, TransportMessage};

    fn rtcp(packets: Vec<Box<dyn rtc::rtcp::Packet>>, attributes: Vec<Attribute>) -> TaggedPacket {
        let mut message = AttributedPacket::new(Packet::Rtcp(packets));
        message.attributes = attributes;
        TransportMessage {
            now: Instant::now(),
            transport: TransportContext::default(),
            message,
        }
    }

    fn read(msg: TaggedPacket) -> Option<TaggedPacket> {
        let mut forwarder = KeyframeForwarder::default();
        forwarder.handle_read(msg).expect("infallible");
        forwarder.poll_read()
    }

    fn target(msg: &TaggedPacket) -> Option<f64> {
        match msg.message.get(&Attribute::TargetBitrateChanged {
            bits_per_second: 0.0,
        }) {
            Some(Attribute::TargetBitrateChanged { bits_per_second }) => Some(*bits_per_second),
            _ => None,
        }
    }

    #[test]
    fn plain_reports_end_here() {
        assert!(read(rtcp(vec![Box::new(ReceiverReport::default())], vec![])).is_none());
    }

    #[test]
    fn feedback_carrying_a_new_target_passes_emptied_with_its_attribute() {
        let out = read(rtcp(
            vec![Box::new(ReceiverReport::default())],
            vec![Attribute::TargetBitrateChanged {
                bits_per_second: 750_000.0,
            }],
        ))
        .expect("the carrier continues");
        assert_eq!(target(&out), Some(750_000.0));
        assert!(matches!(&out.message.packet, Packet::Rtcp(p) if p.is_empty()));
        assert!(!out.message.has(&Attribute::DeliverToApplication));
    }

    #[test]
    fn keyframe_requests_reach_the_application_with_the_target() {
        let out = read(rtcp(
            vec![
                Box::new(ReceiverReport::default()),
                Box::new(PictureLossIndication::default()),
            ],
            vec![Attribute::TargetBitrateChanged {
                bits_per_second: 1e6,
            }],
        ))
        .expect("delivered");
        assert!(out.message.has(&Attribute::DeliverToApplication));
        assert_eq!(target(&out), Some(1e6));
        let Packet::Rtcp(packets) = &out.message.packet else {
            panic!("RTCP expected")
        };
        assert_eq!(packets.len(), 1);
        assert!(is_keyframe_request(packets[0].as_ref()));
    }
}
