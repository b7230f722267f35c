//! HTTP/1.1 framing as the proxy needs it: a request or response read whole from one side of
//! a connection (heads parsed with `httparse`, bodies by `Content-Length`, chunked, or to the
//! end of the connection), and whether the connection ends after it.

use std::io::{self, Read};
use std::net::TcpStream;

/// Largest request or response head accepted; a bigger one closes the connection.
const MAX_HEAD: usize = 64 << 10;
/// Headers per head that `httparse` is given room for.
const MAX_HEADERS: usize = 128;

/// A request or a response, read whole.
#[derive(Debug)]
pub(super) struct Message {
    /// Request method (empty for a response).
    pub(super) method: String,
    /// Request target (empty for a response).
    pub(super) path: String,
    /// Response status (0 for a request).
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    /// The body, chunked framing removed.
    pub(super) body: Vec<u8>,
    /// Every byte as read: head and framed body (for a response, interim 1xx responses first).
    pub(super) raw: Vec<u8>,
    /// The connection ends after this message (`Connection: close`, HTTP/1.0, or a response
    /// delimited by the end of the connection).
    pub(super) close: bool,
}

/// How a message's body is delimited.
pub(super) enum Framing {
    Length(usize),
    Chunked,
    /// Until the sender closes the connection (responses only).
    ToEnd,
}

/// One side of a connection with what was read from it but not consumed yet.
pub(super) struct Peer {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
}

pub(super) fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Peer {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; 0 at the end of the connection.
    pub(super) fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Takes the first `n` bytes, reading as needed.
    pub(super) fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes one line, CRLF included.
    pub(super) fn take_line(&mut self) -> io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.buf[searched..].windows(2).position(|w| w == b"\r\n") {
                return self.take(searched + at + 2);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            searched = self.buf.len().saturating_sub(1);
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Waits until `parse` finds a complete head in the buffer; `Ok(None)` when the connection
    /// ends cleanly before the first byte of a head.
    pub(super) fn head_len(
        &mut self,
        parse: impl Fn(&[u8]) -> httparse::Result<usize>,
    ) -> io::Result<Option<usize>> {
        loop {
            if !self.buf.is_empty() {
                match parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => return Ok(Some(len)),
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {}
                    Ok(httparse::Status::Partial) => return Err(invalid("head too large")),
                    Err(e) => return Err(invalid(&format!("bad head: {e}"))),
                }
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Reads one request; `Ok(None)` when the client closed the connection between requests.
    pub(super) fn read_request(&mut self) -> io::Result<Option<Message>> {
        let parse = |buf: &[u8]| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            httparse::Request::new(&mut headers).parse(buf)
        };
        let Some(len) = self.head_len(parse)? else {
            return Ok(None);
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        request
            .parse(&self.buf[..len])
            .map_err(|e| invalid(&format!("bad request head: {e}")))?;
        let method = request.method.unwrap_or_default().to_owned();
        let path = request.path.unwrap_or_default().to_owned();
        let http10 = request.version == Some(0);
        let headers = owned(request.headers);
        let raw = self.take(len)?;
        let framing = match framing(&headers)? {
            Some(framing) => framing,
            None => Framing::Length(0),
        };
        let close = closes(&headers, http10);
        let mut message = Message {
            method,
            path,
            status: 0,
            headers,
            body: Vec::new(),
            raw,
            close,
        };
        self.read_body(&mut message, framing)?;
        Ok(Some(message))
    }

    /// Reads one response to a `method` request, interim 1xx responses included in its raw
    /// bytes.
    pub(super) fn read_response(&mut self, method: &str) -> io::Result<Message> {
        let mut raw = Vec::new();
        loop {
            let parse = |buf: &[u8]| {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                httparse::Response::new(&mut headers).parse(buf)
            };
            let len = self.head_len(parse)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            response
                .parse(&self.buf[..len])
                .map_err(|e| invalid(&format!("bad response head: {e}")))?;
            let status = response.code.unwrap_or_default();
            let http10 = response.version == Some(0);
            let headers = owned(response.headers);
            raw.extend(self.take(len)?);
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let no_body = method.eq_ignore_ascii_case("HEAD")
                || status == 204
                || status == 304
                || status == 101;
            let framing = if no_body {
                Framing::Length(0)
            } else {
                framing(&headers)?.unwrap_or(Framing::ToEnd)
            };
            let close =
                closes(&headers, http10) || status == 101 || matches!(framing, Framing::ToEnd);
            let mut message = Message {
                method: String::new(),
                path: String::new(),
                status,
                headers,
                body: Vec::new(),
                raw,
                close,
            };
            self.read_body(&mut message, framing)?;
            return Ok(message);
        }
    }

    pub(super) fn read_body(&mut self, message: &mut Message, framing: Framing) -> io::Result<()> {
        match framing {
            Framing::Length(n) => {
                let body = self.take(n)?;
                message.raw.extend_from_slice(&body);
                message.body = body;
            }
            Framing::Chunked => loop {
                let line = self.take_line()?;
                message.raw.extend_from_slice(&line);
                let size = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|l| l.trim_end().split(';').next())
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    .ok_or_else(|| invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let line = self.take_line()?;
                        message.raw.extend_from_slice(&line);
                        if line == b"\r\n" {
                            return Ok(());
                        }
                    }
                }
                let chunk = self.take(size + 2)?;
                if !chunk.ends_with(b"\r\n") {
                    return Err(invalid("chunk without its CRLF"));
                }
                message.raw.extend_from_slice(&chunk);
                message.body.extend_from_slice(&chunk[..size]);
            },
            Framing::ToEnd => {
                while self.fill()? > 0 {}
                let body = std::mem::take(&mut self.buf);
                message.raw.extend_from_slice(&body);
                message.body = body;
            }
        }
        Ok(())
    }
}

pub(super) fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// The body's framing from the headers, `None` when they give none. `Transfer-Encoding` wins
/// over `Content-Length`, as RFC 9112 says.
pub(super) fn framing(headers: &[(String, String)]) -> io::Result<Option<Framing>> {
    if let Some(te) = crate::http::header(headers, "transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or_default().trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(Some(Framing::Chunked))
        } else {
            Err(invalid("a transfer coding other than chunked"))
        };
    }
    match crate::http::header(headers, "content-length") {
        Some(length) => length
            .trim()
            .parse()
            .map(|n| Some(Framing::Length(n)))
            .map_err(|_| invalid("bad Content-Length")),
        None => Ok(None),
    }
}

/// Whether the connection ends after a message with these headers.
pub(super) fn closes(headers: &[(String, String)], http10: bool) -> bool {
    let has = |token: &str| {
        crate::http::header(headers, "connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has("close") || (http10 && !has("keep-alive"))
}
