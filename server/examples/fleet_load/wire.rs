//! The simulator's HTTP/1.1 client: one keep-alive TCP connection from a chosen loopback source
//! address, requests written by hand in one `write`, each answer read to its end
//! (`Content-Length` or chunked) so that the connection can carry the next one.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Time allowed to open a connection (the agent's `CONNECT_TIMEOUT`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read; the snapshot of a big fleet is the largest one.
const MAX_ANSWER: usize = 256 << 20;

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server said `Connection: close`: the connection is not reused.
    pub close: bool,
}

/// A keep-alive connection to the server.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to `server` from `source` (port chosen by the kernel) or, with `None`, from any
    /// address. `timeout` bounds every read and write.
    pub fn open(
        source: Option<SocketAddr>,
        server: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(server), Type::STREAM, None)?;
        if let Some(source) = source {
            socket.bind(&source.into())?;
        }
        socket.connect_timeout(&server.into(), CONNECT_TIMEOUT)?;
        // As the agent's HTTP client does: requests are written whole, never held back.
        socket.set_tcp_nodelay(true)?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            reader: BufReader::with_capacity(16 << 10, stream),
        })
    }

    /// Writes `request` (head and body) and reads the answer.
    pub fn exchange(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.reader.get_mut().write_all(request)?;
        self.read_answer()
    }

    fn read_answer(&mut self) -> io::Result<Answer> {
        let mut line = String::new();
        self.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| bad(format!("not an HTTP status line: {:?}", line.trim_end())))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            self.read_line(&mut line)?;
            let field = line.trim_end();
            if field.is_empty() {
                break;
            }
            let Some((name, value)) = field.split_once(':') else {
                return Err(bad(format!("not a header field: {field:?}")));
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => {
                    length = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| bad(format!("invalid Content-Length {value:?}")))?,
                    )
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = if chunked {
            self.read_chunked()?
        } else if let Some(length) = length {
            if length > MAX_ANSWER {
                return Err(bad(format!("an answer of {length} bytes")));
            }
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body)?;
            body
        } else {
            // Neither: the body runs to the end of the connection.
            close = true;
            let mut body = Vec::new();
            (&mut self.reader)
                .take(MAX_ANSWER as u64)
                .read_to_end(&mut body)?;
            body
        };
        Ok(Answer {
            status,
            body,
            close,
        })
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| bad(format!("invalid chunk size {:?}", line.trim_end())))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    line.clear();
                    self.read_line(&mut line)?;
                    if line.trim_end().is_empty() {
                        return Ok(body);
                    }
                }
            }
            if body.len() + size > MAX_ANSWER {
                return Err(bad("a chunked answer that is too large".into()));
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            line.clear();
            self.read_line(&mut line)?;
        }
    }

    /// One line; the end of the connection before it is an error.
    fn read_line(&mut self, line: &mut String) -> io::Result<()> {
        if (&mut self.reader).take(64 << 10).read_line(line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

fn bad(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}

/// `GET path` on a fresh connection from any local address; the answer's body when it is `200`.
pub fn get(server: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    let mut conn = Connection::open(None, server, Duration::from_secs(120))
        .map_err(|e| format!("GET {path}: cannot connect to {server}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    );
    let answer = conn
        .exchange(request.as_bytes())
        .map_err(|e| format!("GET {path}: {e}"))?;
    if answer.status != 200 {
        return Err(format!(
            "GET {path} answered {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body).trim()
        ));
    }
    Ok(answer.body)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A server that answers every request on one connection with the next canned answer.
    fn canned(answers: &'static [&'static str]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for answer in answers {
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                reader.get_mut().write_all(answer.as_bytes()).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_sized_and_chunked_answers_on_one_connection() {
        let server = canned(&[
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
        ]);
        let source = "127.10.0.1:0".parse().unwrap();
        let mut conn = Connection::open(Some(source), server, Duration::from_secs(5)).unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let a = conn.exchange(request).unwrap();
        assert_eq!(
            (a.status, a.body.as_slice(), a.close),
            (200, &b"ok"[..], false)
        );
        let b = conn.exchange(request).unwrap();
        assert_eq!(
            (b.status, b.body.as_slice(), b.close),
            (200, &b"abcde"[..], false)
        );
        let c = conn.exchange(request).unwrap();
        assert_eq!(
            (c.status, c.body.as_slice(), c.close),
            (503, &b"busy"[..], true)
        );
        let err = conn.exchange(request).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
            ),
            "{err}"
        );
    }
}
