//! golectra: a connection's bytes in and out — straight from and to the socket, or through the
//! connection's TLS session ([`crate::tls::TlsSession`]) when the listener speaks TLS. The
//! reactor's reading and writing paths call only these, so everything above (the state
//! machine, deadlines, lingering) is the same for both.

use std::cell::RefCell;
use std::io::{ErrorKind, Result as IoResult, Write};
use std::time::Instant;

use super::{fill, Conn, ConnState, Reactor, SCRATCH};
use crate::conn::READ_CHUNK;
use crate::policy::Counters;
use crate::tls::TlsRead;

/// The one line a plain HTTP client on a TLS port gets (with `400` and `Connection: close`).
pub(crate) const NOT_TLS: &str = "this port speaks HTTPS: use an https:// address";

/// What one read brought.
pub(super) enum Input {
    /// Bytes, or TLS progress without plaintext yet (a handshake).
    Data,
    /// The client closed its side.
    Eof,
    /// Plain HTTP on a TLS port.
    NotTls,
}

thread_local! {
    /// Each thread's buffer for decrypted bytes (copied out at once, like [`SCRATCH`]).
    static PLAIN: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

impl Reactor {
    /// Reads once and feeds the state machine what arrived (decrypted, with TLS). A TLS
    /// handshake's own output is written on the way, as far as the socket takes it.
    pub(super) fn read_input(&self, conn: &Conn, st: &mut ConnState) -> IoResult<Input> {
        let ConnState { m, tls, .. } = st;
        let Some(session) = tls.as_deref_mut() else {
            return Ok(
                match fill(&conn.socket, |bytes| m.feed(bytes, Instant::now()))? {
                    0 => Input::Eof,
                    _ => Input::Data,
                },
            );
        };
        write_some(session.write_pending(&conn.socket))?;
        let read = SCRATCH.with(|scratch| {
            PLAIN.with(|plain| {
                session.read(
                    &conn.socket,
                    &mut scratch.borrow_mut(),
                    &mut plain.borrow_mut(),
                    |bytes| m.feed(bytes, Instant::now()),
                )
            })
        });
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                if e.kind() == ErrorKind::InvalidData {
                    Counters::bump(&self.env.counters.tls_failed);
                    log::debug!("TLS connection from {:?} failed: {e}", conn.peer);
                    // The alert rustls queued, best effort.
                    let _ = session.write_pending(&conn.socket);
                }
                return Err(e);
            }
        };
        if session.handshake_completed() {
            m.handshake_done(Instant::now(), &self.env);
        }
        write_some(session.write_pending(&conn.socket))?;
        Ok(match read {
            TlsRead::Progress => Input::Data,
            TlsRead::Eof => Input::Eof,
            TlsRead::NotTls => {
                Counters::bump(&self.env.counters.tls_failed);
                // The refusal goes out in plain text: the client speaks no TLS.
                *tls = None;
                Input::NotTls
            }
        })
    }

    /// Writes the machine's pending output: `Ok` once all of it is on the socket (through
    /// the TLS session, with TLS), `WouldBlock` when the socket is full.
    pub(super) fn write_output(&self, conn: &Conn, st: &mut ConnState) -> IoResult<()> {
        let ConnState { m, tls, .. } = st;
        loop {
            let out = m.unwritten();
            let Some(session) = tls.as_deref_mut() else {
                if out.is_empty() {
                    return Ok(());
                }
                match (&conn.socket).write(out) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => m.wrote(n, Instant::now()),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            };
            if !out.is_empty() {
                let n = session.queue(out);
                if n == 0 && !session.has_pending() {
                    return Err(std::io::Error::other(
                        "the TLS session takes no more output",
                    ));
                }
                m.wrote(n, Instant::now());
            }
            session.write_pending(&conn.socket)?;
            if m.unwritten().is_empty() {
                return Ok(());
            }
        }
    }

    /// Writes `bytes` outside a response (`100 Continue`); false if the connection failed.
    pub(super) fn write_interim(&self, conn: &Conn, st: &mut ConnState, bytes: &[u8]) -> bool {
        match st.tls.as_deref_mut() {
            // A connection's send buffer takes these few bytes at once.
            None => (&conn.socket).write_all(bytes).is_ok(),
            Some(session) => {
                session.queue(bytes) == bytes.len()
                    && write_some(session.write_pending(&conn.socket)).is_ok()
            }
        }
    }

    /// Whether output waits for the socket to become writable (TLS records after a read).
    pub(super) fn output_waits(st: &ConnState) -> bool {
        st.tls.as_deref().is_some_and(|s| s.has_pending())
    }

    /// Ends a TLS session cleanly (close_notify, best effort) before the socket is closed.
    pub(super) fn say_goodbye(&self, conn: &Conn, st: &mut ConnState) {
        if let Some(session) = st.tls.as_deref_mut() {
            session.close_notify();
            let _ = session.write_pending(&conn.socket);
        }
    }
}

/// A write that may stop at a full socket: what was not written stays pending.
fn write_some(result: IoResult<()>) -> IoResult<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        other => other,
    }
}
