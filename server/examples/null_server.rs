//! The HTTP ceiling of Golectra's stack, for `bench/run.sh` (scenario NULL): the same vendored
//! tiny_http with the same connection policy and worker count as `golectra-server`, answering
//! every request `200 ok` without reading the store. The difference between this and S1/S3 is
//! what Golectra itself costs; the difference between this and nginx is what the stack costs.
//!
//! `cargo run --release --example null_server -- 127.0.0.1:8081 8`

use std::sync::Arc;

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(8);
    let listener = std::net::TcpListener::bind(&listen).expect("bind");
    let server = Arc::new(tiny_http::Server::from_listener(listener, None).expect("server"));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let _ = request.respond(tiny_http::Response::from_string("ok"));
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}
