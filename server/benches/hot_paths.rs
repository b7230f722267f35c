//! Micro-benchmarks of the server's hot paths, on the standard library alone (`harness = false`,
//! so it runs on stable without a benchmark framework): request routing, JSON decoding of a
//! 100-item batch, gzip inflation, batch aggregation + store apply, snapshot serialization.
//!
//! `cargo bench -p golectra-server --bench hot_paths` prints the median time per operation of
//! several one-second rounds. Figures are for comparing changes on one machine, not absolute.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use golectra_server::app::App;
use golectra_server::audit::Audit;
use golectra_server::history::{History, HistoryOptions};
use golectra_server::http::request::{Incoming, Method};
use golectra_server::http::router;
use golectra_server::store::memory::MemoryStore;
use golectra_server::store::{Batch, KeyOptions, snapshot};
use golectra_server::traffic::{HttpStats, Route};

/// Routes like a worker does: classify the path, then serve it.
fn serve(app: &App, req: &Incoming) -> golectra_server::http::reply::Reply {
    let route = Route::of(&Route::segments(&req.path));
    router::route(app, req, route).expect("served").value
}

/// Runs `op` in rounds of about `ROUND`, returns the median nanoseconds per call.
fn measure(name: &str, mut op: impl FnMut()) {
    const ROUND: Duration = Duration::from_millis(300);
    const ROUNDS: usize = 5;
    // Calibrate the number of calls per round.
    let mut calls = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..calls {
            op();
        }
        if start.elapsed() >= ROUND / 10 {
            break;
        }
        calls *= 2;
    }
    calls *= 10;
    let mut per_call: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                op();
            }
            start.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    println!("{name:<44} {:>12.0} ns/op", per_call[ROUNDS / 2]);
}

fn batch_json() -> Vec<u8> {
    let mut items: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"id":"g{i}","type":"gauge","value":{}}}"#,
                i as f64 * 1.5
            )
        })
        .collect();
    items.extend((0..50).map(|i| format!(r#"{{"id":"c{i}","type":"counter","delta":{}}}"#, i + 1)));
    format!("[{}]", items.join(",")).into_bytes()
}

fn app() -> App {
    App {
        store: MemoryStore::ephemeral_with(KeyOptions {
            retention: Duration::from_secs(3600),
            max_keys: usize::MAX,
        }),
        audit: Audit::disabled(),
        key: None,
        require_signature: false,
        limits: golectra_server::config::Config::defaults().limits,
        max_metrics: golectra_server::store::MaxMetrics::DEFAULT,
        started: Instant::now(),
        stats: HttpStats::default(),
        history: Arc::new(History::new(HistoryOptions {
            interval: Duration::from_secs(5),
            points: 0,
            ..HistoryOptions::default()
        })),
        listener: OnceLock::new(),
        store_slots: golectra_server::store_slots::StoreSlots::for_workers(4),
        expiry: Default::default(),
        expiry_stats: Default::default(),
        admin_token: None,
    }
}

fn incoming(method: Method, path: &str, body: Vec<u8>) -> Incoming {
    Incoming {
        method,
        method_name: if method == Method::Post {
            "POST"
        } else {
            "GET"
        }
        .into(),
        path: path.into(),
        query: String::new(),
        wire_bytes: body.len(),
        body,
        request_signature: None,
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        x_real_ip: None,
        x_forwarded_for: None,
        accept_gzip: false,
        idempotency_key: None,
        authorization: None,
    }
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: stay quick there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let json = batch_json();
    let gz = golectra_common::gzip::compress(&json);
    let app = app();

    let text_update = incoming(Method::Post, "/update/gauge/m42/12.5", Vec::new());
    measure("route: POST /update/gauge/m42/12.5", || {
        black_box(serve(&app, black_box(&text_update)));
    });
    let text_value = incoming(Method::Get, "/value/gauge/m42", Vec::new());
    measure("route: GET /value/gauge/m42", || {
        black_box(serve(&app, black_box(&text_value)));
    });
    let mut keyed_text = text_update.clone();
    let mut n = 0u64;
    measure("route: POST /update/gauge/m42/12.5 + key", || {
        n += 1;
        keyed_text.idempotency_key = Some(format!("0123456789abcdef0123456789abcdef:{n}"));
        black_box(serve(&app, black_box(&keyed_text)));
    });
    let batch = incoming(Method::Post, "/updates", json.clone());
    measure("route: POST /updates (100 items)", || {
        black_box(serve(&app, black_box(&batch)));
    });
    let mut keyed_batch = batch.clone();
    measure("route: POST /updates (100 items) + key", || {
        n += 1;
        keyed_batch.idempotency_key = Some(format!("0123456789abcdef0123456789abcdef:{n}"));
        black_box(serve(&app, black_box(&keyed_batch)));
    });
    measure("decode: JSON batch of 100", || {
        black_box(router::decode_batch(black_box(&json), 100_000).unwrap());
    });
    measure("gzip: inflate the 100-item batch", || {
        black_box(golectra_common::gzip::inflate(black_box(&gz), 32 << 20).unwrap());
    });
    let updates = router::decode_batch(&json, 100_000).unwrap();
    measure("store: aggregate + apply 100 metrics", || {
        let batch = Batch::aggregate(black_box(updates.clone())).unwrap();
        app.store.apply(&batch, None).unwrap().wait().unwrap();
    });
    let big: Vec<(String, f64)> = (0..100_000)
        .map(|i| (format!("metric_{i}"), i as f64 * 0.5))
        .collect();
    measure("snapshot: encode 100 000 gauges", || {
        black_box(snapshot::encode(
            big.iter().map(|(n, v)| (n.as_str(), *v, 1_764_547_200_000)),
            std::iter::empty(),
            big.len(),
        ));
    });
}
