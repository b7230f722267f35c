//! golectra: the incremental `Transfer-Encoding: chunked` decoder. Chunk-size lines are parsed
//! by `httparse::parse_chunk_size`; framing lines are bounded (4 KiB each, 32 trailer lines).

/// Longest chunk-size or trailer line accepted.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer lines accepted.
pub(crate) const MAX_TRAILERS: usize = 32;

/// Why a chunked body was refused (`400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkError(pub &'static str);

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
/// decoder grew a size line without limit).
pub(crate) struct ChunkDecoder {
    state: ChunkState,
    line: Vec<u8>,
    trailers: usize,
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self {
            state: ChunkState::Size,
            line: Vec::new(),
            trailers: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending data to `out`, and stops once `out` holds more than
    /// `max` bytes (so what happens to a body over the limit does not depend on how its bytes
    /// arrived); returns how many input bytes were used (all of them unless the body ended, or
    /// went over `max`, inside `input`).
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, ChunkError> {
        let mut used = 0;
        while used < input.len() && self.state != ChunkState::Done && out.len() <= max {
            let rest = &input[used..];
            match self.state {
                ChunkState::Data(left) => {
                    let room = (max - out.len()).saturating_add(1);
                    let n = left.min(rest.len()).min(room);
                    out.extend_from_slice(&rest[..n]);
                    used += n;
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
                        return Err(ChunkError("chunk framing line too long"));
                    }
                    self.line.extend_from_slice(&rest[..n]);
                    used += n;
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
                // These lines end in LF or CRLF, as before httparse.
                let empty = line == b"\n" || line == b"\r\n";
                match self.state {
                    ChunkState::DataEnd if empty => ChunkState::Size,
                    ChunkState::DataEnd => {
                        return Err(ChunkError("chunk data longer than its size"))
                    }
                    _ if empty => ChunkState::Done,
                    _ => {
                        self.trailers += 1;
                        if self.trailers > MAX_TRAILERS {
                            return Err(ChunkError("too many trailer lines"));
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
    const INVALID: ChunkError = ChunkError("invalid chunk size");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkDecoder::new();
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
        let mut d = ChunkDecoder::new();
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
            let mut d = ChunkDecoder::new();
            assert!(
                d.feed(bad, &mut Vec::new(), usize::MAX).is_err(),
                "{:?}",
                bad
            );
        }
        let mut d = ChunkDecoder::new();
        assert!(d
            .feed(&[b'1'; MAX_CHUNK_LINE + 1], &mut Vec::new(), usize::MAX)
            .is_err());
        let trailers = format!("0\r\n{}", "X: y\r\n".repeat(MAX_TRAILERS + 1));
        let mut d = ChunkDecoder::new();
        assert!(d
            .feed(trailers.as_bytes(), &mut Vec::new(), usize::MAX)
            .is_err());
    }

    #[test]
    fn decoding_stops_just_over_the_limit() {
        let body = b"5\r\nabcde\r\n5\r\nfghij\r\nBROKEN";
        for piece in [1, 4, body.len()] {
            let mut d = ChunkDecoder::new();
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
