//! systemd's readiness protocol (`sd_notify`) for `Type=notify` units: `READY=1`, `STATUS=…`,
//! `STOPPING=1` and `WATCHDOG=1` datagrams sent to `$NOTIFY_SOCKET`, which may be a path or an
//! abstract socket (`@name`). Without `NOTIFY_SOCKET` every call is a no-op, so the daemons
//! behave the same outside systemd. The protocol is small and stable, so it is written here
//! rather than pulled in as a dependency.

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

fn connect(socket: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn path_socket() {
        let dir = tempfile_dir();
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_values(path.to_str(), None, None);
        n.ready("serving");
        assert_eq!(receive(&listener), "READY=1\nSTATUS=serving");
        n.stopping();
        assert_eq!(receive(&listener), "STOPPING=1\nSTATUS=stopping");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("golectra-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::from_values(Some(&format!("@{name}")), Some("2000000"), None);
        n.watchdog();
        assert_eq!(receive(&listener), "WATCHDOG=1");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(1)));
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
