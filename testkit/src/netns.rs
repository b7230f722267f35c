//! A private network namespace in which a test can make the kernel drop packets: the one
//! faithful way to stand for a network that silently loses everything (a firewall that drops,
//! a host that vanished). A user-space proxy that stops forwarding cannot: its kernel still
//! acknowledges what the client sends and answers keepalive probes.
//!
//! The namespace is held by a `sleep` started under `unshare --net` (root only); its loopback
//! is up and its `local` routing rule moved behind rule 10, so that [`PrivateNetwork::drop_packets`]
//! can add `blackhole` rules for one loopback address (say `127.0.0.2`) in both directions
//! while `127.0.0.1` keeps working. Threads [`enter`](PrivateNetwork::enter) it; a process
//! spawned from such a thread starts in it. Nothing outside the namespace is touched; the
//! holder is killed when the value is dropped, which ends the namespace once its last process
//! and socket are gone.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// A network namespace of this test.
pub struct PrivateNetwork {
    holder: Child,
    path: PathBuf,
}

/// Set-up run in the namespace before its holder sleeps.
const SETUP: &str = "ip link set lo up && ip rule del pref 0 && ip rule add pref 100 lookup local && echo ready && exec sleep infinity";

impl PrivateNetwork {
    /// Creates the namespace (needs root, `unshare` and `ip`); panics with the reason when it
    /// cannot.
    pub fn create() -> Self {
        let mut holder = Command::new("unshare")
            .args(["--net", "sh", "-c", SETUP])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare --net");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the namespace holder's output");
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!("cannot set up a private network namespace (unshare --net, ip rule)");
        }
        let path = PathBuf::from(format!("/proc/{}/ns/net", holder.id()));
        Self { holder, path }
    }

    /// Moves the calling thread into the namespace (its sockets and the processes it spawns
    /// are then in it).
    pub fn enter(&self) {
        let ns = std::fs::File::open(&self.path).expect("open the namespace");
        move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(LinkNameSpaceType::Network),
        )
        .expect("setns into the private network namespace");
    }

    /// A listener bound to `addr` inside the namespace (bound on a thread of its own, so the
    /// caller stays where it is). Accepting from it works from any thread.
    pub fn bind(&self, addr: SocketAddr) -> TcpListener {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter();
                TcpListener::bind(addr).expect("bind in the private network namespace")
            })
            .join()
            .expect("the binding thread")
        })
    }

    /// Starts (`true`) or stops dropping every packet to and from `ip` inside the namespace.
    pub fn drop_packets(&self, ip: Ipv4Addr, on: bool) {
        let verb = if on { "add" } else { "del" };
        for (pref, direction) in [("10", "to"), ("11", "from")] {
            let status = Command::new("nsenter")
                .arg(format!("--net={}", self.path.display()))
                .args(["ip", "rule", verb, "pref", pref, direction])
                .arg(ip.to_string())
                .arg("blackhole")
                .status()
                .expect("run nsenter ip rule");
            assert!(
                status.success(),
                "ip rule {verb} {direction} {ip} blackhole failed"
            );
        }
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
