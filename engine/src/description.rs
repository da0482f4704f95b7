//! Remote descriptions screened before they reach the PeerConnection: a video section that offers
//! no H.264 (a VP8-only browser) is marked inactive, so that the answer rejects that one section
//! (port 0) while audio and the data channels go on, instead of the whole answer failing; and a
//! rejected section's own ICE credentials (Chromium writes some) are dropped, since webrtc-rs
//! refuses a description whose sections name different ones. Also the DTLS role a description
//! states (`a=setup:`), read and restated.

/// What screening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screened {
    /// The description to set: the original, or one with the H.264-less video sections inactive.
    pub sdp: String,
    /// Some video section (not already rejected) carried no H.264.
    pub video_without_h264: bool,
    /// Some video section was rejected (port 0): in an answer, the other side takes no H.264.
    pub video_rejected: bool,
}

/// A rejected section (port 0) carries no transport: ICE lines in it mean nothing.
fn is_rejected(section: &str) -> bool {
    section.starts_with("m=") && section.split(' ').nth(1).is_some_and(|port| port == "0")
}

fn is_ice_credential(line: &str) -> bool {
    line.starts_with("a=ice-ufrag:") || line.starts_with("a=ice-pwd:")
}

/// Marks each live `m=video` section without an `a=rtpmap:<pt> H264/...` line inactive. webrtc-rs
/// would otherwise attach our H.264 sender to that section, find no codec in common and refuse to
/// create any answer ("unable to populate media section"); an inactive section instead gets a
/// receive-only transceiver of its own, which the answer rejects.
pub fn screen(sdp: &str) -> Screened {
    let mut out = String::with_capacity(sdp.len() + 16);
    let mut video_without_h264 = false;
    let mut video_rejected = false;
    let mut changed = false;
    for section in sections(sdp) {
        video_rejected |= section.starts_with("m=video 0 ");
        if is_rejected(section) {
            for line in section.split_inclusive('\n') {
                if is_ice_credential(line) {
                    changed = true;
                } else {
                    out.push_str(line);
                }
            }
        } else if needs_rejecting(section) {
            video_without_h264 = true;
            let eol = if section.contains("\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            for line in section.split_inclusive('\n') {
                if !is_direction(line) {
                    out.push_str(line);
                }
            }
            if !out.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str("a=inactive");
            out.push_str(eol);
        } else {
            out.push_str(section);
        }
    }
    Screened {
        sdp: if video_without_h264 || changed {
            out
        } else {
            sdp.to_owned()
        },
        video_without_h264,
        video_rejected,
    }
}

/// The session part, then one slice per `m=` section (each ending where the next begins).
fn sections(sdp: &str) -> Vec<&str> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in sdp.split_inclusive('\n') {
        if offset > 0 && line.starts_with("m=") {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(sdp.len());
    starts.windows(2).map(|w| &sdp[w[0]..w[1]]).collect()
}

fn needs_rejecting(section: &str) -> bool {
    let mut lines = section.lines();
    let Some(m) = lines.next().and_then(|l| l.strip_prefix("m=video ")) else {
        return false;
    };
    let port_zero = m.split(' ').next().is_some_and(|port| port == "0");
    if port_zero {
        return false;
    }
    !lines.any(|line| {
        line.strip_prefix("a=rtpmap:")
            .and_then(|rest| rest.split_once(' '))
            .is_some_and(|(_, codec)| {
                codec
                    .get(..5)
                    .is_some_and(|name| name.eq_ignore_ascii_case("H264/"))
            })
    })
}

fn is_direction(line: &str) -> bool {
    matches!(
        line.trim_end(),
        "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
    )
}

/// Whether a description carries a live data channel section (`m=application`, port not 0).
pub fn has_data_channels(sdp: &str) -> bool {
    sections(sdp)
        .iter()
        .any(|section| section.starts_with("m=application ") && !is_rejected(section))
}

/// The DTLS role a description states (`a=setup:` of its first section that has one):
/// "active", "passive" or "actpass".
pub fn dtls_setup(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix("a=setup:"))
}

/// `sdp` with every `a=setup:` line stating `role` (line endings kept).
pub fn with_dtls_setup(sdp: &str, role: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            let body = line.trim_end_matches(['\r', '\n']);
            match body.strip_prefix("a=setup:") {
                Some(_) => format!("a=setup:{role}{}", &line[body.len()..]),
                None => line.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    const AUDIO: &str = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n";
    const VP8: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendrecv\r\na=rtpmap:96 VP8/90000\r\n";
    const H264: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendrecv\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 h264/90000\r\n";
    const DATA: &str =
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n";

    #[test]
    fn video_without_h264_becomes_inactive_and_nothing_else_changes() {
        let offer = format!("{SESSION}{AUDIO}{VP8}{DATA}");
        let screened = screen(&offer);
        assert!(screened.video_without_h264);
        let expected_video = VP8.replace("a=sendrecv\r\n", "") + "a=inactive\r\n";
        assert_eq!(
            screened.sdp,
            format!("{SESSION}{AUDIO}{expected_video}{DATA}")
        );
    }

    #[test]
    fn descriptions_with_h264_or_no_live_video_pass_unchanged() {
        let rejected = VP8.replace("m=video 9", "m=video 0");
        let answer = format!("{SESSION}{AUDIO}{rejected}");
        assert!(screen(&answer).video_rejected);
        assert!(!screen(&format!("{SESSION}{AUDIO}{H264}")).video_rejected);
        for sdp in [
            format!("{SESSION}{AUDIO}{H264}{DATA}"),
            format!("{SESSION}{AUDIO}{DATA}"),
            String::new(),
            "garbage".into(),
        ] {
            assert_eq!(
                screen(&sdp),
                Screened {
                    sdp: sdp.clone(),
                    video_without_h264: false,
                    video_rejected: false,
                },
                "{sdp:?}"
            );
        }
    }

    #[test]
    fn a_rejected_section_loses_its_own_ice_credentials() {
        let live = format!("{AUDIO}a=ice-ufrag:live\r\na=ice-pwd:secret\r\n");
        let rejected = "m=video 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:other\r\na=ice-pwd:else\r\n";
        let screened = screen(&format!("{SESSION}{live}{rejected}"));
        assert_eq!(
            screened.sdp,
            format!(
                "{SESSION}{live}m=video 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
            )
        );
        assert!(screened.video_rejected);
        assert!(!screened.video_without_h264);
    }

    #[test]
    fn a_last_section_without_a_final_newline_stays_well_formed() {
        let offer = format!("{SESSION}{}", VP8.trim_end());
        let screened = screen(&offer);
        assert!(screened.video_without_h264);
        assert!(screened.sdp.ends_with("VP8/90000\r\na=inactive\r\n"));
    }

    #[test]
    fn the_dtls_role_is_read_and_restated_in_every_section() {
        let answer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=setup:active\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=setup:active\r\na=mid:1\r\n";
        assert_eq!(dtls_setup(answer), Some("active"));
        let restated = with_dtls_setup(answer, "passive");
        assert_eq!(
            restated,
            answer.replace("a=setup:active", "a=setup:passive")
        );
        assert_eq!(dtls_setup(&restated), Some("passive"));
        assert_eq!(dtls_setup("v=0\r\nm=audio 9 RTP/AVP 0\r\n"), None);
    }

    #[test]
    fn a_data_channel_section_is_found_unless_rejected() {
        assert!(has_data_channels(&format!("{SESSION}{AUDIO}{H264}{DATA}")));
        assert!(!has_data_channels(&format!("{SESSION}{AUDIO}{H264}")));
        let rejected = DATA.replace("m=application 9 ", "m=application 0 ");
        assert!(!has_data_channels(&format!("{SESSION}{AUDIO}{rejected}")));
    }
}
