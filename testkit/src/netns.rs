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
//!
//! [`PrivateNetwork::veth`] links the namespace to the test's own namespace by a veth pair on a
//! private /30, so a client in it reaches a server outside from a non-loopback address (a
//! "remote" peer on this machine); the pair is removed when its [`Veth`] is dropped.

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

/// A veth pair between the test's namespace and a [`PrivateNetwork`]; removed on drop.
pub struct Veth {
    /// The address of the test's end (a server listening on it is reached from the namespace).
    pub host: Ipv4Addr,
    /// The address of the namespace's end (the peer address a server outside sees).
    pub inside: Ipv4Addr,
    name: String,
}

impl PrivateNetwork {
    /// Links the namespace to the caller's by a veth pair with addresses on a /30 of
    /// `10.201.0.0/16` chosen from the process id and a counter, so concurrent tests do not
    /// collide. Panics with the command that failed.
    pub fn veth(&self) -> Veth {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let slot = (pid.wrapping_mul(7) + n) % (256 * 64);
        let base = Ipv4Addr::new(10, 201, (slot / 64) as u8, ((slot % 64) * 4) as u8);
        let [a, b, c, d] = base.octets();
        let (host, inside) = (Ipv4Addr::new(a, b, c, d + 1), Ipv4Addr::new(a, b, c, d + 2));
        let name = format!("glh{}x{n}", pid % 100_000);
        let peer = format!("gln{}x{n}", pid % 100_000);
        let holder = self.holder.id().to_string();
        let net = format!("--net={}", self.path.display());
        let run = |args: &[&str]| {
            let status = Command::new(args[0])
                .args(&args[1..])
                .status()
                .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
            assert!(status.success(), "{args:?} failed");
        };
        run(&[
            "ip", "link", "add", &name, "type", "veth", "peer", "name", &peer,
        ]);
        let veth = Veth {
            host,
            inside,
            name: name.clone(),
        };
        run(&["ip", "link", "set", &peer, "netns", &holder]);
        run(&["ip", "addr", "add", &format!("{host}/30"), "dev", &name]);
        run(&["ip", "link", "set", &name, "up"]);
        run(&[
            "nsenter",
            &net,
            "ip",
            "addr",
            "add",
            &format!("{inside}/30"),
            "dev",
            &peer,
        ]);
        run(&["nsenter", &net, "ip", "link", "set", &peer, "up"]);
        veth
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
