use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, ErrorKind, Read, Write};

use std::net::{Shutdown, SocketAddr};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::connection::Connection;
use crate::policy::{phase, ConnState, ConnectionPolicy, Counters};
use crate::request::Prefetch;
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder};
use crate::Request;

/// golectra: how long a connection that is being closed with unread input keeps draining it, so
/// that the client reads the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// golectra: most bytes drained while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // golectra: every write happens on this connection thread: workers write responses into a
    // buffer that comes back here (`pending`), so a client that does not read cannot block a
    // worker, and responses leave in request order.
    sink: RefinedTcpStream,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // golectra: the connection's phase and deadlines, its socket, the response of the request in
    // flight, and whether unread input must be drained before closing.
    state: Arc<ConnState>,
    socket: Arc<Connection>,
    pending: Option<Receiver<Vec<u8>>>,
    linger: bool,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
#[allow(dead_code)] // golectra: the versions are kept for debug output only
pub(crate) enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    // golectra: limits of the connection policy and malformed input.
    /// A head line, the header count or the whole head is over its limit (`431`).
    HeaderTooLarge,
    /// A head line is not ASCII (`400`).
    NotAscii,
    /// `Content-Length` is not a number or the chunked framing is broken (`400`).
    BadBody,
    /// The body buffer budget stayed exhausted (`503`).
    BudgetExhausted,
}

/// golectra: limits on the request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub max_line: usize,
    pub max_count: usize,
    pub max_bytes: usize,
}

impl HeadLimits {
    pub(crate) fn of(policy: &ConnectionPolicy) -> Self {
        Self {
            max_line: policy.max_header_line,
            max_count: policy.max_header_count,
            max_bytes: policy.max_head_bytes,
        }
    }
}

/// A parsed request head.
pub(crate) type Head = (Method, String, HTTPVersion, Vec<Header>);

/// golectra: reads one request head from `source` within `limits`; `first_byte` runs once the
/// first byte of the request arrived (the connection stops being idle).
pub(crate) fn read_head<R: Read>(
    source: &mut R,
    limits: HeadLimits,
    first_byte: impl FnOnce() -> IoResult<()>,
) -> Result<Head, ReadError> {
    let mut budget = limits.max_bytes;
    let mut first_byte = Some(first_byte);
    // reading the request line
    let line = read_next_line(source, limits.max_line, &mut budget, &mut first_byte)?;
    let (method, path, version) = parse_request_line(line.as_str().trim())?;

    // getting all headers
    let mut headers = Vec::new();
    loop {
        let line = read_next_line(
            source,
            limits.max_line,
            &mut budget,
            &mut None::<fn() -> IoResult<()>>,
        )?;
        if line.is_empty() {
            break;
        };
        if headers.len() >= limits.max_count {
            return Err(ReadError::HeaderTooLarge);
        }
        headers.push(match FromStr::from_str(line.as_str().trim()) {
            Ok(h) => h,
            _ => return Err(ReadError::WrongHeader(version)),
        });
    }
    Ok((method, path, version, headers))
}

/// Reads until `CRLF` is reached. The next read will start at the first byte of the new line.
/// golectra: bounded by `max_line` and the remaining head budget; non-ASCII is its own error.
fn read_next_line<R: Read, F: FnOnce() -> IoResult<()>>(
    source: &mut R,
    max_line: usize,
    budget: &mut usize,
    first_byte: &mut Option<F>,
) -> Result<AsciiString, ReadError> {
    let mut buf = Vec::new();
    let mut prev_byte_was_cr = false;

    loop {
        let byte = source.by_ref().bytes().next();

        let byte = match byte {
            Some(b) => b.map_err(ReadError::ReadIoError)?,
            None => {
                return Err(ReadError::ReadIoError(IoError::new(
                    ErrorKind::ConnectionAborted,
                    "Unexpected EOF",
                )))
            }
        };
        if let Some(f) = first_byte.take() {
            f().map_err(ReadError::ReadIoError)?;
        }

        if byte == b'\n' && prev_byte_was_cr {
            buf.pop(); // removing the '\r'
            return AsciiString::from_ascii(buf).map_err(|_| ReadError::NotAscii);
        }

        prev_byte_was_cr = byte == b'\r';

        if buf.len() > max_line || *budget == 0 {
            return Err(ReadError::HeaderTooLarge);
        }
        *budget -= 1;
        buf.push(byte);
    }
}

/// golectra: a worker writes its response here; the bytes go back to the connection thread when
/// the writer is dropped (after `respond`, or by `Request`'s drop which answers 500).
pub(crate) struct ResponseBuffer {
    buf: Vec<u8>,
    done: Option<Sender<Vec<u8>>>,
}

impl Write for ResponseBuffer {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}

impl Drop for ResponseBuffer {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.buf));
        }
    }
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub(crate) fn new(socket: Arc<Connection>, state: Arc<ConnState>) -> ClientConnection {
        let (mut read_socket, write_socket) = RefinedTcpStream::new(socket.clone(), state.clone());
        let remote_addr = read_socket.peer_addr();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: write_socket,
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            state,
            socket,
            pending: None,
            linger: false,
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        self.state.enter_idle();
        let limits = HeadLimits::of(&self.state.shared.policy);
        let state = self.state.clone();
        let (method, path, version, headers) =
            read_head(&mut self.next_header_source, limits, move || {
                state.enter_head()
            })?;

        // building the writer for the request
        let (done, pending) = mpsc::channel();
        let writer = ResponseBuffer {
            buf: Vec::new(),
            done: Some(done),
        };

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            false,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
            Some(Prefetch {
                state: &self.state,
                continue_writer: &mut self.sink,
            }),
        )
        .map_err(|e| {
            use crate::request::RequestCreationError as E;
            match e {
                E::CreationIoError(e) => ReadError::ReadIoError(e),
                E::ExpectationFailed => ReadError::ExpectationFailed(version),
                E::InvalidContentLength | E::InvalidChunkedBody => ReadError::BadBody,
                E::BudgetExhausted => ReadError::BudgetExhausted,
            }
        })?;
        self.state.enter_dispatched();
        self.pending = Some(pending);
        if request.close_connection {
            self.no_more_requests = true;
            self.linger = true;
        }

        // return the request
        Ok(request)
    }

    /// golectra: writes a whole response, each write bounded by `io_timeout` and the whole by
    /// `body_timeout`.
    fn deliver(&mut self, bytes: &[u8]) -> IoResult<()> {
        let policy = &self.state.shared.policy;
        let deadline = Instant::now() + policy.body_timeout;
        let mut rest = bytes;
        while !rest.is_empty() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| IoError::new(ErrorKind::TimedOut, "response deadline passed"))?;
            self.socket
                .set_write_timeout(Some(left.min(policy.io_timeout)))?;
            match self.sink.write(rest) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// golectra: answers a request that never reached a worker, then closes.
    fn refuse(&mut self, status: u16, message: &str) {
        let body = format!("{}\n", message);
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            status,
            StatusCode(status).default_reason_phrase(),
            body.len()
        );
        if self.deliver((head + &body).as_bytes()).is_ok() {
            self.linger_close();
        }
    }

    /// golectra: half-closes and drains what the client still sends (bounded in time and
    /// bytes), so that it reads our answer rather than a connection reset.
    fn linger_close(&mut self) {
        let _ = self.socket.shutdown(Shutdown::Write);
        self.state.enter_closing(LINGER);
        let mut drained = 0;
        let mut buf = [0u8; 4096];
        while drained < LINGER_BYTES {
            match self.next_header_source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        // golectra: the connection no longer counts against the cap.
        self.state.deregister();
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // golectra: the previous request's response goes out before the next request is read,
        // so pipelined requests are answered in order, one at a time.
        if let Some(pending) = self.pending.take() {
            let bytes = pending.recv().ok()?;
            self.deliver(&bytes).ok()?;
        }

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            if self.linger {
                self.linger_close();
            }
            return None;
        }

        let state = self.state.clone();
        let counters = &state.shared.counters;
        let rq = match self.read() {
            Err(ReadError::WrongRequestLine) => {
                Counters::bump(&counters.bad_request);
                self.refuse(400, "malformed request line");
                return None; // we don't know where the next request would start,
                             // se we have to close
            }

            Err(ReadError::WrongHeader(_)) => {
                Counters::bump(&counters.bad_request);
                self.refuse(400, "malformed header line");
                return None; // we don't know where the next request would start,
                             // se we have to close
            }

            Err(ReadError::NotAscii) => {
                Counters::bump(&counters.bad_request);
                self.refuse(400, "the request line and headers must be ASCII");
                return None;
            }

            Err(ReadError::BadBody) => {
                Counters::bump(&counters.bad_request);
                self.refuse(400, "invalid Content-Length or chunked framing");
                return None;
            }

            Err(ReadError::HeaderTooLarge) => {
                Counters::bump(&counters.header_too_large);
                self.refuse(431, "request header fields too large");
                return None;
            }

            Err(ReadError::BudgetExhausted) => {
                Counters::bump(&counters.budget_exhausted);
                self.refuse(
                    503,
                    "server busy: too many request bodies in flight, retry later",
                );
                return None;
            }

            Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                // golectra: an idle connection that sent nothing closes silently; a request
                // that started and missed its deadline gets a 408.
                if self.state.phase() != phase::IDLE {
                    Counters::bump(&counters.timed_out);
                    self.refuse(
                        408,
                        "request timeout: the request head or body came too slowly",
                    );
                }
                return None; // closing the connection
            }

            Err(ReadError::ExpectationFailed(_)) => {
                self.refuse(417, "unsupported Expect header");
                return None; // TODO: should be recoverable, but needs handling in case of body
            }

            Err(ReadError::ReadIoError(_)) => return None,

            Ok(rq) => rq,
        };

        // checking HTTP version
        if *rq.http_version() > (1, 1) {
            // golectra: answered here and closed; the dropped request's 500 is discarded.
            self.pending = None;
            drop(rq);
            self.refuse(505, "This server only supports HTTP versions 1.0 and 1.1");
            return None;
        }

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // returning the request
        Some(rq)
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

/// golectra: parses one request head from raw bytes with the limits of `policy`, exactly as a
/// connection would (for fuzzing). Returns the method, path and header count, or a description
/// of the error.
#[doc(hidden)]
pub fn parse_head_for_fuzzing(
    bytes: &[u8],
    policy: &ConnectionPolicy,
) -> Result<(String, String, usize), String> {
    let mut source = bytes;
    read_head(&mut source, HeadLimits::of(policy), || Ok(()))
        .map(|(method, path, _, headers)| (method.to_string(), path, headers.len()))
        .map_err(|e| format!("{:?}", e))
}

/// golectra: decodes a chunked body from raw bytes, up to `max` bytes (for fuzzing).
#[doc(hidden)]
pub fn decode_chunked_for_fuzzing(bytes: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    crate::policy::ChunkedReader::new(bytes)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
