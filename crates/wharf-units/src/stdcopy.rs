//! Docker's multiplexed stream format (its `stdcopy` package: an 8-byte header `[stream, 0,
//! 0, 0, length]` before each chunk of a non-TTY stream) and its detach keys, shared by the
//! shim, which writes the frames, the daemon, which forwards them, and the CLI, which reads them.

/// Stream number of stdout in a frame.
pub const STREAM_STDOUT: u8 = 1;
/// Stream number of stderr in a frame.
pub const STREAM_STDERR: u8 = 2;

/// A stream frame: `[stream, 0, 0, 0, len u32 big-endian]` then the data, as Docker frames
/// non-TTY streams.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Split one complete frame off the front of `buf`: `(stream, payload, bytes used)`.
pub fn parse_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    if buf.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return None;
    }
    Some((buf[0], &buf[8..8 + len], 8 + len))
}

/// Docker's detach keys (`ctrl-p,ctrl-q` when `None`): `ctrl-<letter>` and the control
/// punctuation, or single characters, as the daemon and the CLI both read them.
pub fn detach_keys(spec: Option<&str>) -> Vec<u8> {
    spec.unwrap_or("ctrl-p,ctrl-q")
        .split(',')
        .filter_map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                match c.bytes().next()? {
                    c @ b'a'..=b'z' => Some(c - b'a' + 1),
                    b'@' => Some(0),
                    b'[' => Some(27),
                    b'\\' => Some(28),
                    b']' => Some(29),
                    b'^' => Some(30),
                    b'_' => Some(31),
                    _ => None,
                }
            } else if k.len() == 1 {
                k.bytes().next()
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut b = frame(STREAM_STDERR, b"oops");
        b.extend(frame(STREAM_STDOUT, b""));
        let (s, p, n) = parse_frame(&b).unwrap();
        assert_eq!((s, p, n), (STREAM_STDERR, &b"oops"[..], 12));
        let (s, p, n2) = parse_frame(&b[n..]).unwrap();
        assert_eq!((s, p.len(), n2), (STREAM_STDOUT, 0, 8));
        assert!(parse_frame(&b[..7]).is_none());
        assert!(parse_frame(&b[..11]).is_none());
    }

    #[test]
    fn detach_key_specs() {
        assert_eq!(detach_keys(None), vec![16, 17]);
        assert_eq!(detach_keys(Some("ctrl-a,x")), vec![1, b'x']);
        assert_eq!(detach_keys(Some("ctrl-x,xy")), vec![24]);
    }
}
