use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use crate::connection::Connection;
use crate::policy::ConnState;

// golectra: the TLS variants are gone (the ssl features were dropped), and both halves share one
// socket through an `Arc` instead of duplicating the file descriptor: a connection costs one
// descriptor, and the registry's handle can shut it down. Reads go through the connection's
// deadline guard.
pub struct RefinedTcpStream {
    stream: Arc<Connection>,
    guard: Option<Arc<ConnState>>,
    close_read: bool,
    close_write: bool,
}

impl RefinedTcpStream {
    pub(crate) fn new(
        stream: Arc<Connection>,
        guard: Arc<ConnState>,
    ) -> (RefinedTcpStream, RefinedTcpStream) {
        let read = RefinedTcpStream {
            stream: stream.clone(),
            guard: Some(guard),
            close_read: true,
            close_write: false,
        };

        let write = RefinedTcpStream {
            stream,
            guard: None,
            close_read: false,
            close_write: true,
        };

        (read, write)
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match &*self.stream {
            Connection::Tcp(s) => s.peer_addr().map(Some),
            #[cfg(unix)]
            Connection::Unix(_) => Ok(None),
        }
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match &self.guard {
            Some(guard) => guard.read(&self.stream, buf),
            None => (&*self.stream).read(buf),
        }
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        (&*self.stream).write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}
