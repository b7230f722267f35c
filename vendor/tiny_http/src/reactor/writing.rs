//! golectra: writing — responses written without blocking (what the socket does not take is
//! finished on `EPOLLOUT` by whichever worker sees it), `100 Continue`, and lingering after a
//! refusal (half-close, drain the client's input for a while).

use std::io::{ErrorKind, Result as IoResult, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Instant;

use rustix::event::epoll;

use super::{fill, Conn, ConnState, Reactor};
use crate::conn::{Next, CONTINUE};

impl Reactor {
    /// Takes the encoded response of a dispatched request and starts writing it.
    fn respond(&self, conn: &Conn, bytes: Vec<u8>) {
        let mut st = conn.lock();
        if st.m.respond(bytes, Instant::now(), &self.env) {
            self.flush(conn, &mut st);
        }
        self.schedule_deadline(conn, &mut st);
    }

    /// Writes what the socket takes; then keeps the connection alive, closes or lingers.
    pub(super) fn flush(&self, conn: &Conn, st: &mut ConnState) {
        match self.write_output(conn, st) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return self.arm(conn, st, epoll::EventFlags::OUT);
            }
            Err(_) => return self.close(conn, st),
        }
        match st.m.finish_writing(Instant::now(), &self.env) {
            Next::Read => self.arm(conn, st, epoll::EventFlags::IN),
            // A pipelined request already buffered (or an end of input already seen) is driven
            // again at once: the socket is writable.
            Next::Drive => self.arm(conn, st, epoll::EventFlags::OUT),
            Next::Close => {
                self.say_goodbye(conn, st);
                self.close(conn, st);
            }
            Next::Linger => {
                self.say_goodbye(conn, st);
                let _ = conn.socket.shutdown(Shutdown::Write);
                self.drain(conn, st);
            }
        }
    }

    /// Reads and discards what a refused client still sends, until it closes, or the linger
    /// deadline or byte limit is reached.
    pub(super) fn drain(&self, conn: &Conn, st: &mut ConnState) {
        loop {
            let mut more = true;
            match fill(&conn.socket, |bytes| more = st.m.drained(bytes.len())) {
                Ok(0) => return self.close(conn, st),
                Ok(_) if !more => return self.close(conn, st),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return self.arm(conn, st, epoll::EventFlags::IN);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(conn, st),
            }
        }
    }

    /// Writes `100 Continue`; a connection's send buffer takes these 25 bytes at once.
    pub(super) fn send_continue(&self, conn: &Conn, st: &mut ConnState) -> bool {
        self.write_interim(conn, st, CONTINUE)
    }
}

/// The handler writes its response here; dropping it (after `respond`, or by `Request`'s drop,
/// which answers `500`) hands the bytes to the connection.
pub(super) struct ResponseSink {
    reactor: Arc<Reactor>,
    conn: Arc<Conn>,
    bytes: Vec<u8>,
}

impl ResponseSink {
    pub(super) fn new(reactor: Arc<Reactor>, conn: Arc<Conn>) -> Self {
        Self {
            reactor,
            conn,
            bytes: Vec::new(),
        }
    }
}

impl Write for ResponseSink {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}

impl Drop for ResponseSink {
    fn drop(&mut self) {
        self.reactor
            .respond(&self.conn, std::mem::take(&mut self.bytes));
    }
}
