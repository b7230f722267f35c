//! systemd's readiness protocol (`sd_notify`) for `Type=notify` units: `READY=1`, `STATUS=…`,
//! `STOPPING=1` and `WATCHDOG=1` datagrams sent to `$NOTIFY_SOCKET`, which may be a path or an
//! abstract socket (`@name`). Without `NOTIFY_SOCKET` every call is a no-op, so the daemons
//! behave the same outside systemd. The protocol is small and stable, so it is written here
//! rather than pulled in as a dependency.
//!
//! [`Listener`] is the receiving end — what systemd does — for the daemons' integration tests.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends notifications to the service manager, if there is one.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the process environment.
    pub fn from_env() -> Self {
        Self::from_values(
            std::env::var("NOTIFY_SOCKET").ok().as_deref(),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        )
    }

    /// Builds a notifier from the values of the three variables (pure, for tests).
    pub fn from_values(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
    ) -> Self {
        let target = socket
            .filter(|s| !s.is_empty())
            .and_then(|s| match connect(s) {
                Ok(target) => Some(target),
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET={s} is unusable, systemd will not hear from us: {e}");
                    None
                }
            });
        let for_us = watchdog_pid
            .is_none_or(|pid| pid.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = watchdog_usec
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(|usec| Duration::from_micros(usec / 2));
        Self { target, watchdog }
    }

    /// A notifier that never sends anything.
    pub fn disabled() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    /// Whether a service manager listens (`NOTIFY_SOCKET` was set and usable).
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1` (half of `WATCHDOG_USEC`), if the watchdog is enabled.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A `STATUS=` line shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// `STOPPING=1` at the start of shutdown.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// `WATCHDOG=1`: the daemon is alive and making progress.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            log::debug!("sd_notify {message:?} failed: {e}");
        }
    }
}

fn address(socket: &str) -> std::io::Result<SocketAddr> {
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(socket),
    }
}

fn connect(socket: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    Ok((UnixDatagram::unbound()?, address(socket)?))
}

/// The service manager's side of the protocol, for tests: binds a datagram socket that a daemon
/// started with `NOTIFY_SOCKET=`[`Listener::notify_socket`] reports to.
#[derive(Debug)]
pub struct Listener {
    socket: UnixDatagram,
    name: String,
}

/// One received datagram and when it arrived.
#[derive(Debug, Clone)]
pub struct Message {
    /// The datagram's text (invalid UTF-8 replaced), one `KEY=value` assignment per line.
    pub text: String,
    /// When [`Listener::recv`] received the datagram.
    pub at: std::time::Instant,
}

impl Message {
    /// Whether the datagram carries the assignment `field` (e.g. `READY=1`) on a line of its own.
    pub fn has(&self, field: &str) -> bool {
        self.text.lines().any(|l| l == field)
    }

    /// The value of `KEY=` in the datagram, if present.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

impl Listener {
    /// Binds `socket`: a filesystem path, or `@name` for an abstract socket.
    pub fn bind(socket: &str) -> std::io::Result<Self> {
        Ok(Self {
            socket: UnixDatagram::bind_addr(&address(socket)?)?,
            name: socket.to_owned(),
        })
    }

    /// The value to put in the daemon's `NOTIFY_SOCKET`.
    pub fn notify_socket(&self) -> &str {
        &self.name
    }

    /// The next datagram, or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Message> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .ok()?;
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(Message {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            at: std::time::Instant::now(),
        })
    }

    /// Receives until a datagram carrying `field` arrives; returns it with everything received
    /// before it, or `Err` with what was received if `timeout` passes first.
    pub fn wait_for(
        &self,
        field: &str,
        timeout: Duration,
    ) -> Result<(Message, Vec<Message>), Vec<Message>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(before);
            }
            match self.recv(left) {
                Some(m) if m.has(field) => return Ok((m, before)),
                Some(m) => before.push(m),
                None => return Err(before),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(listener: &Listener) -> String {
        listener
            .recv(Duration::from_secs(5))
            .expect("a datagram")
            .text
    }

    #[test]
    fn path_socket() {
        let dir = tempfile_dir();
        let path = dir.join("notify.sock");
        let listener = Listener::bind(path.to_str().unwrap()).unwrap();
        let n = Notifier::from_values(Some(listener.notify_socket()), None, None);
        assert!(n.is_enabled());
        n.ready("serving");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=serving");
        n.stopping();
        assert_eq!(receive(&listener), "STOPPING=1\nSTATUS=stopping");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn abstract_socket() {
        let listener = Listener::bind(&format!("@golectra-test-{}", std::process::id())).unwrap();
        let n = Notifier::from_values(Some(listener.notify_socket()), Some("2000000"), None);
        n.watchdog();
        assert_eq!(receive(&listener), "WATCHDOG=1");
        n.ready("serving on http://127.0.0.1:1");
        let (ready, before) = listener
            .wait_for("READY=1", Duration::from_secs(5))
            .unwrap();
        assert!(before.is_empty());
        assert_eq!(ready.value("STATUS"), Some("serving on http://127.0.0.1:1"));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let n = Notifier::from_values(None, Some("1000000"), None);
        assert!(!n.is_enabled());
        n.ready("x");
        n.watchdog();
        assert!(!Notifier::from_values(Some(""), None, None).is_enabled());
        assert!(!Notifier::disabled().is_enabled());
    }

    #[test]
    fn watchdog_only_for_our_pid() {
        assert_eq!(
            Notifier::from_values(None, Some("1000000"), Some("1")).watchdog_interval(),
            None
        );
        let ours = std::process::id().to_string();
        assert!(
            Notifier::from_values(None, Some("1000000"), Some(&ours))
                .watchdog_interval()
                .is_some()
        );
        assert_eq!(
            Notifier::from_values(None, None, None).watchdog_interval(),
            None
        );
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "golectra-notify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
