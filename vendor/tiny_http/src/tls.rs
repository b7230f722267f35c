//! golectra: TLS on the listener — the acceptor a server's connections take their rustls
//! configuration from (replaceable at run time, for certificate renewals), and one connection's
//! TLS session as the reactor drives it without blocking: ciphertext read from the socket goes
//! through `read_tls` / `process_new_packets` and comes out as the plaintext the connection's
//! state machine is fed; plaintext to send goes in through `writer()` and out by `write_tls`.
//!
//! The state machine never knows TLS is there. The reactor asks the session for two things:
//! "read what the socket has" ([`TlsSession::read`]) and "write what is pending"
//! ([`TlsSession::write_pending`]); both return `WouldBlock` like a socket would.
//!
//! A connection whose first byte is not a TLS handshake record (`0x16`) is answered, in plain
//! text, with a `400` saying the port speaks HTTPS — a plain `http://` client gets a clear
//! failure at once instead of a hang or a TLS alert it cannot read.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::{Arc, RwLock};

use rustls::{ServerConfig, ServerConnection};

use crate::connection::Connection;

/// Most plaintext queued inside a session before `write_pending` must take some out.
const SEND_BUFFER: usize = 64 << 10;
/// The first byte of a TLS record carrying a handshake message (RFC 8446 §5.1).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Where new connections take their TLS configuration from. [`TlsAcceptor::replace`] changes
/// it for connections accepted from then on; established ones keep theirs.
pub struct TlsAcceptor {
    config: RwLock<Arc<ServerConfig>>,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            config: RwLock::new(config),
        }
    }

    /// New connections use `config` from now on (e.g. after a renewed certificate was read).
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    pub(crate) fn session(&self) -> io::Result<TlsSession> {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(SEND_BUFFER));
        Ok(TlsSession {
            conn,
            first_byte_seen: false,
            handshake_reported: false,
        })
    }
}

/// What [`TlsSession::read`] found besides plaintext.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TlsRead {
    /// Ciphertext was read (maybe no plaintext yet: a handshake in progress).
    Progress,
    /// The socket or the TLS session (close_notify) ended the client's input.
    Eof,
    /// The first byte was not a TLS handshake: a plain HTTP client on a TLS port.
    NotTls,
}

/// One connection's TLS session.
pub(crate) struct TlsSession {
    conn: ServerConnection,
    first_byte_seen: bool,
    handshake_reported: bool,
}

impl TlsSession {
    /// Reads once from the socket, decrypts, and hands the plaintext to `take`. A TLS error
    /// (bad handshake, unknown client certificate, corrupt record) is an `InvalidData` error;
    /// the alert rustls queued for it is written by `write_pending`, best effort.
    pub fn read(
        &mut self,
        socket: &Connection,
        scratch: &mut [u8],
        plain: &mut [u8],
        mut take: impl FnMut(&[u8]),
    ) -> io::Result<TlsRead> {
        let n = (&*socket).read(scratch)?;
        if n == 0 {
            return Ok(TlsRead::Eof);
        }
        if !self.first_byte_seen {
            self.first_byte_seen = true;
            if scratch[0] != HANDSHAKE_RECORD {
                return Ok(TlsRead::NotTls);
            }
        }
        let mut ciphertext = &scratch[..n];
        let mut ended = false;
        while !ciphertext.is_empty() {
            self.conn.read_tls(&mut ciphertext)?;
            let state = self
                .conn
                .process_new_packets()
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
            ended |= state.peer_has_closed();
            loop {
                match self.conn.reader().read(plain) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(k) => take(&plain[..k]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // The peer closed the socket without close_notify.
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                        ended = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(if ended {
            TlsRead::Eof
        } else {
            TlsRead::Progress
        })
    }

    /// True once, when the handshake has just completed.
    pub fn handshake_completed(&mut self) -> bool {
        if self.handshake_reported || self.conn.is_handshaking() {
            return false;
        }
        self.handshake_reported = true;
        true
    }

    /// Queues plaintext to send; returns how much was taken (less than all when the session's
    /// send buffer is full: write what is pending first).
    pub fn queue(&mut self, bytes: &[u8]) -> usize {
        self.conn.writer().write(bytes).unwrap_or(0)
    }

    /// Whether ciphertext is waiting for the socket.
    pub fn has_pending(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes pending ciphertext until none is left (`Ok`) or the socket is full
    /// (`WouldBlock`).
    pub fn write_pending(&mut self, socket: &Connection) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = socket;
            match self.conn.write_tls(&mut out) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues the close_notify alert (before the connection is closed or half-closed).
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::conn::{Env, Expiry, Machine, Phase, Step};
    use crate::policy::ConnectionPolicy;

    fn env() -> Env {
        Env::new(ConnectionPolicy {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            ..ConnectionPolicy::default()
        })
    }

    #[test]
    fn a_handshake_must_be_over_by_the_header_deadline() {
        let env = env();
        let t0 = Instant::now();
        let mut m = Machine::new(t0, &env);
        m.expect_handshake(t0, &env);
        assert_eq!(
            m.next_deadline(t0, &env),
            Some(t0 + Duration::from_secs(10))
        );
        assert_eq!(m.expire(t0 + Duration::from_secs(9), &env), Expiry::Nothing);
        // Missed: closed silently (no TLS session to answer in), like an idle connection.
        assert_eq!(m.expire(t0 + Duration::from_secs(10), &env), Expiry::Close);
    }

    #[test]
    fn after_the_handshake_a_connection_waits_for_its_first_request_like_any_other() {
        let env = env();
        let t0 = Instant::now();
        let mut m = Machine::new(t0, &env);
        m.expect_handshake(t0, &env);
        let t1 = t0 + Duration::from_secs(2);
        m.handshake_done(t1, &env);
        assert_eq!(m.phase(), Phase::Idle);
        assert_eq!(
            m.next_deadline(t1, &env),
            Some(t1 + Duration::from_secs(60))
        );
        assert_eq!(m.eviction_key(), Some((false, t1)));
        assert_eq!(
            m.expire(t0 + Duration::from_secs(30), &env),
            Expiry::Nothing
        );
        // The first request's head then has the header deadline, as on a plain connection.
        m.feed(b"GET / HTTP/1.1\r\n", t1);
        assert!(matches!(m.poll(t1, &env), Step::NeedInput));
        assert_eq!(
            m.next_deadline(t1, &env),
            Some(t1 + Duration::from_secs(10))
        );
    }

    #[test]
    fn plain_http_on_the_tls_port_is_refused_with_a_reason_and_connection_close() {
        let env = env();
        let t0 = Instant::now();
        let mut m = Machine::new(t0, &env);
        let step = m.refuse_now(400, crate::reactor::transport::NOT_TLS, t0, &env);
        assert!(matches!(step, Step::Refuse(400)));
        let out = String::from_utf8(m.unwritten().to_vec()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{}", out);
        assert!(out.contains("Connection: close\r\n"), "{}", out);
        assert!(
            out.ends_with("this port speaks HTTPS: use an https:// address\n"),
            "{}",
            out
        );
    }
}
