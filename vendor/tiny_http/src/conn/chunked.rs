//! golectra: the incremental `Transfer-Encoding: chunked` decoder. Chunk-size lines are parsed
//! by `httparse::parse_chunk_size`; framing lines are bounded (4 KiB each, 32 trailer lines),
//! every line ends in `CRLF`, and the whole body is bounded on the wire (data and framing), not
//! only decoded.

/// Longest chunk-size or trailer line accepted.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer lines accepted.
pub(crate) const MAX_TRAILERS: usize = 32;
/// What a chunked body may take on the wire beyond twice its decoded limit (see [`wire_limit`]).
pub(crate) const WIRE_ALLOWANCE: usize = 64 << 10;

/// Most bytes a chunked body whose decoded limit is `body_limit` may take on the wire: chunk
/// data, chunk-size lines, extensions, trailers and line ends together. Twice the limit leaves
/// room for small chunks (a 16-byte chunk costs 22 bytes), the allowance for trailers; without
/// it, chunk extensions read ~4000 bytes per byte decoded.
pub(crate) fn wire_limit(body_limit: usize) -> usize {
    body_limit.saturating_mul(2).saturating_add(WIRE_ALLOWANCE)
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChunkError {
    /// Broken framing (`400`), with the reason.
    Framing(&'static str),
    /// More bytes on the wire than the decoder's limit (`413`).
    WireLimit,
}

impl ChunkError {
    /// What the client is told.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ChunkError::Framing(reason) => reason,
            ChunkError::WireLimit => "chunked body too large on the wire (data and framing)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(usize),
    /// After a chunk's data, expecting its line end.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailer,
    Done,
}

/// Fed whatever bytes arrived, it never re-reads input and bounds its framing lines (upstream's
/// decoder grew a size line without limit) and the bytes it reads in all.
pub(crate) struct ChunkDecoder {
    state: ChunkState,
    line: Vec<u8>,
    trailers: usize,
    /// Bytes used so far, and at most.
    wire: usize,
    max_wire: usize,
}

impl ChunkDecoder {
    /// A decoder that refuses a body taking more than `max_wire` bytes on the wire.
    pub fn new(max_wire: usize) -> Self {
        Self {
            state: ChunkState::Size,
            line: Vec::new(),
            trailers: 0,
            wire: 0,
            max_wire,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending data to `out`, and stops once `out` holds more than
    /// `max` bytes (so what happens to a body over the limit does not depend on how its bytes
    /// arrived); returns how many input bytes were used (all of them unless the body ended, or
    /// went over `max`, inside `input`). Past `max_wire` bytes in all it fails with
    /// [`ChunkError::WireLimit`], at the same byte however the input is split.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, ChunkError> {
        let mut used = 0;
        while used < input.len() && self.state != ChunkState::Done && out.len() <= max {
            if self.wire == self.max_wire {
                return Err(ChunkError::WireLimit);
            }
            let allowed = (self.max_wire - self.wire).min(input.len() - used);
            let rest = &input[used..used + allowed];
            match self.state {
                ChunkState::Data(left) => {
                    let room = (max - out.len()).saturating_add(1);
                    let n = left.min(rest.len()).min(room);
                    out.extend_from_slice(&rest[..n]);
                    used += n;
                    self.wire += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let (line_done, n) = match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => (true, i + 1),
                        None => (false, rest.len()),
                    };
                    if self.line.len() + n > MAX_CHUNK_LINE {
                        return Err(ChunkError::Framing("chunk framing line too long"));
                    }
                    self.line.extend_from_slice(&rest[..n]);
                    used += n;
                    self.wire += n;
                    if line_done {
                        self.end_line()?;
                    }
                }
                ChunkState::Done => unreachable!(),
            }
        }
        Ok(used)
    }

    /// Interprets the completed framing line in `self.line` (ending in LF).
    fn end_line(&mut self) -> Result<(), ChunkError> {
        let mut line = std::mem::take(&mut self.line);
        self.state = match self.state {
            ChunkState::Size => match chunk_size(&line)? {
                0 => ChunkState::Trailer,
                size => ChunkState::Data(size),
            },
            ChunkState::DataEnd | ChunkState::Trailer => {
                // Exactly CRLF, as every other line (a bare LF here was accepted until
                // 0.12.0+golectra.2; a parser that skips two bytes blindly would frame such a
                // body differently).
                let empty = line == b"\r\n";
                match self.state {
                    ChunkState::DataEnd if empty => ChunkState::Size,
                    ChunkState::DataEnd => {
                        return Err(ChunkError::Framing("chunk data longer than its size"))
                    }
                    _ if empty => ChunkState::Done,
                    _ => {
                        self.trailers += 1;
                        if self.trailers > MAX_TRAILERS {
                            return Err(ChunkError::Framing("too many trailer lines"));
                        }
                        if !is_field_line(&line) {
                            return Err(ChunkError::Framing("malformed trailer line"));
                        }
                        ChunkState::Trailer
                    }
                }
            }
            ChunkState::Data(_) | ChunkState::Done => unreachable!(),
        };
        // Keep the allocation for the next line.
        line.clear();
        self.line = line;
        Ok(())
    }
}

/// The size on a complete chunk-size line (ending in `CRLF`), by `httparse`. httparse reads a
/// line without any digit (`"\r\n"`, `";ext\r\n"`) as size 0; this engine always refused those.
fn chunk_size(line: &[u8]) -> Result<usize, ChunkError> {
    const INVALID: ChunkError = ChunkError::Framing("invalid chunk size");
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(INVALID);
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => {
            <usize as std::convert::TryFrom<u64>>::try_from(size).map_err(|_| INVALID)
        }
        // A lone LF inside an extension: the line did not end in CRLF.
        _ => Err(INVALID),
    }
}

/// A trailer line (ending in `CRLF`) that is a field line as in a request head: a token, a
/// colon, then spaces, tabs and visible ASCII only (no obs-fold, no bare `CR`).
fn is_field_line(line: &[u8]) -> bool {
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return false;
    };
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    !name.is_empty()
        && name.iter().all(|&b| is_tchar(b))
        && value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkDecoder::new(usize::MAX);
        let mut out = Vec::new();
        let mut used = 0;
        for part in input.chunks(piece) {
            used += d.feed(part, &mut out, usize::MAX)?;
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "incomplete");
        Ok((out, used))
    }

    #[test]
    fn decodes_whatever_the_piece_size_and_stops_at_the_end() {
        let body = b"7\r\n[{\"id\":\r\n3;ext=1\r\n\"a\"\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1";
        let end = body.len() - b"GET / HTTP/1.1".len();
        for piece in [1, 2, 3, 5, 64] {
            let (out, used) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(out, b"[{\"id\":\"a\"");
            assert!(used <= end, "piece {}", piece);
        }
        let mut d = ChunkDecoder::new(usize::MAX);
        let mut out = Vec::new();
        assert_eq!(d.feed(body, &mut out, usize::MAX).unwrap(), end);
    }

    #[test]
    fn refuses_broken_framing() {
        for bad in [
            &b"zz\r\n"[..],
            b"3\r\nabcd\r\n",
            b"\r\n",
            b";ext\r\n",
            b" 3\r\n",
            b"3\n",
            b"3;ext\n",
            b"11111111111111111\r\n",
        ] {
            let mut d = ChunkDecoder::new(usize::MAX);
            assert!(
                d.feed(bad, &mut Vec::new(), usize::MAX).is_err(),
                "{:?}",
                bad
            );
        }
        let mut d = ChunkDecoder::new(usize::MAX);
        assert!(d
            .feed(&[b'1'; MAX_CHUNK_LINE + 1], &mut Vec::new(), usize::MAX)
            .is_err());
        let trailers = format!("0\r\n{}", "X: y\r\n".repeat(MAX_TRAILERS + 1));
        let mut d = ChunkDecoder::new(usize::MAX);
        assert!(d
            .feed(trailers.as_bytes(), &mut Vec::new(), usize::MAX)
            .is_err());
    }

    #[test]
    fn every_line_ends_in_crlf_and_trailers_are_field_lines() {
        for bad in [
            &b"3\r\nabc\n0\r\n\r\n"[..],
            b"3\r\nabc\r\n0\r\n\n",
            b"3\r\nabc\r\n0\r\nX: y\n\r\n",
            b"0\r\n Folded: y\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX: a\rb\r\n\r\n",
            b"0\r\nX: \x01\r\n\r\n",
        ] {
            let mut d = ChunkDecoder::new(usize::MAX);
            assert!(
                matches!(
                    d.feed(bad, &mut Vec::new(), usize::MAX),
                    Err(ChunkError::Framing(_))
                ),
                "{:?}",
                bad
            );
        }
        let (out, _) = decode_in_pieces(b"1\r\na\r\n0\r\nX-T: v\tw\r\nY:\r\n\r\n", 1).unwrap();
        assert_eq!(out, b"a");
    }

    #[test]
    fn the_wire_limit_holds_at_the_same_byte_however_the_input_is_split() {
        // 1 byte of data per 41 bytes of framing.
        let chunk = format!("1;{}\r\nx\r\n", "e".repeat(35));
        assert_eq!(chunk.len(), 42);
        let body = format!("{}0\r\n\r\n", chunk.repeat(10));
        let exact = body.len();
        for piece in [1, 7, 42, body.len()] {
            let mut d = ChunkDecoder::new(exact);
            let mut out = Vec::new();
            for part in body.as_bytes().chunks(piece) {
                d.feed(part, &mut out, usize::MAX).unwrap();
            }
            assert!(d.is_done(), "a body of exactly the limit is taken");
            let mut d = ChunkDecoder::new(exact - 1);
            let mut out = Vec::new();
            let error = body
                .as_bytes()
                .chunks(piece)
                .find_map(|part| d.feed(part, &mut out, usize::MAX).err());
            assert_eq!(error, Some(ChunkError::WireLimit), "piece {}", piece);
            assert_eq!(d.wire, exact - 1, "piece {}", piece);
        }
        assert_eq!(wire_limit(4 << 20), (8 << 20) + (64 << 10));
        assert_eq!(wire_limit(usize::MAX), usize::MAX);
    }

    #[test]
    fn decoding_stops_just_over_the_limit() {
        let body = b"5\r\nabcde\r\n5\r\nfghij\r\nBROKEN";
        for piece in [1, 4, body.len()] {
            let mut d = ChunkDecoder::new(usize::MAX);
            let mut out = Vec::new();
            for part in body.chunks(piece) {
                d.feed(part, &mut out, 6).unwrap();
            }
            assert_eq!(out, b"abcdefg", "piece {}", piece);
        }
    }

    #[test]
    fn size_lines_take_hex_any_case_extensions_and_spaces_before_them() {
        for (line, size) in [
            (&b"a\r\n"[..], 10),
            (b"A\r\n", 10),
            (b"1F;name=\"v\"\r\n", 31),
            (b"5 ;x\r\n", 5),
            (b"0\r\n", 0),
        ] {
            assert_eq!(chunk_size(line), Ok(size), "{:?}", line);
        }
    }
}
