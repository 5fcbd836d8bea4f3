//! SDP checks the server makes itself before str0m parses an offer, sans-IO. str0m owns the
//! offer/answer; this catches what would trip it.

#![forbid(unsafe_code)]

/// The first payload type an offer describes (`a=rtpmap`, `a=fmtp`, `a=rtcp-fb`) in a media
/// section whose `m=` line does not list it (sans-IO). Browsers never write one; str0m 0.24
/// binds the description to that section anyway, and a payload type bound in two sections
/// trips its codec matching (a fuzzer find).
pub fn stray_format(sdp: &str) -> Option<u16> {
    let mut listed: Option<Vec<u16>> = None;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(media) = line.strip_prefix("m=") {
            listed = Some(
                media
                    .split_whitespace()
                    .skip(3)
                    .filter_map(|f| f.parse().ok())
                    .collect(),
            );
            continue;
        }
        let Some(listed) = &listed else {
            continue;
        };
        let described = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|pt| pt.parse::<u16>().ok());
        if let Some(pt) = described {
            if !listed.contains(&pt) {
                return Some(pt);
            }
        }
    }
    None
}

/// The SSRCs an offer announces (`a=ssrc:` lines, RTX ones included), in order, without
/// repeats (sans-IO). Browsers, OBS and GStreamer announce every SSRC they send.
pub fn announced_ssrcs(sdp: &str) -> Vec<u32> {
    let mut ssrcs = Vec::new();
    for line in sdp.lines() {
        let ssrc = line
            .strip_prefix("a=ssrc:")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(ssrc) = ssrc {
            if !ssrcs.contains(&ssrc) {
                ssrcs.push(ssrc);
            }
        }
    }
    ssrcs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_described_outside_its_section_is_found() {
        let clash = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                     a=rtpmap:104 H264/90000\r\nm=video 9 UDP/TLS/RTP/SAVPF 104\r\n";
        assert_eq!(stray_format(clash), Some(104));
        let fine = "v=0\r\na=rtpmap:5 x\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
                    a=rtpmap:96 H264/90000\r\na=fmtp:97 apt=96\r\na=rtcp-fb:96 nack\r\n";
        assert_eq!(
            stray_format(fine),
            None,
            "before any m= line nothing is checked"
        );
        assert_eq!(stray_format(""), None);
    }

    #[test]
    fn announced_ssrcs_are_listed_once() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=ssrc-group:FID 11 22\r\n\
                   a=ssrc:11 cname:x\r\na=ssrc:11 msid:a b\r\na=ssrc:22 cname:x\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:4294967295 cname:x\r\n\
                   a=ssrc:99999999999 cname:x\r\n";
        assert_eq!(announced_ssrcs(sdp), [11, 22, u32::MAX]);
        assert!(announced_ssrcs("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n").is_empty());
    }
}
