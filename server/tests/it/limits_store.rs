//! Bounded store size (docs/limits.md, "Store size"), against every backend: `MAX_METRICS`
//! refuses whole a write that would add a name past it (409, one line naming the limit, nothing
//! applied, no idempotency key recorded) on every write endpoint while writes to stored names
//! pass; with PostgreSQL the count is exact across servers sharing one database, follows
//! rows deleted by hand and starts from the rows a database held before its migration. The dashboard of a store of thousands of metrics is one bounded page
//! with the filter applied by the server; the history stays under `HISTORY_MAX_BYTES` in total.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use golectra_server::history::HistoryOptions;
use golectra_server::store::MaxMetrics;
use golectra_testkit::{Client, eventually};

use crate::harness::{Backend, TestServer, backends, keyed};

fn gauges_json(names: impl IntoIterator<Item = String>, value: f64) -> String {
    let items: Vec<String> = names
        .into_iter()
        .map(|n| format!(r#"{{"id":"{n}","type":"gauge","value":{value}}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

fn value(c: &Client, kind: &str, name: &str) -> (u16, String) {
    let r = c.get(&format!("/value/{kind}/{name}"));
    (r.status, r.text())
}

fn full(kind: &str, stored: usize, adding: usize) -> String {
    format!(
        "MAX_METRICS is 10 {kind}s: {stored} are stored and this write would add {adding} new {kind} name{}; nothing was applied (writes to stored {kind}s still pass)\n",
        if adding == 1 { "" } else { "s" }
    )
}

#[test]
fn max_metrics_refuses_the_write_that_would_add_the_eleventh_name() {
    for backend in backends() {
        let s = TestServer::start_with(backend, |c| c.max_metrics = MaxMetrics(10));
        let c = s.client();
        let ten = gauges_json((0..10).map(|i| format!("g{i}")), 1.5);
        assert_eq!(c.post_json("/updates/", &ten).status, 200, "{backend:?}");
        let counters = r#"[{"id":"c0","type":"counter","delta":5}]"#;
        assert_eq!(c.post_json("/updates/", counters).status, 200);

        // A batch updating stored names and adding one: refused whole.
        let eleventh = r#"[{"id":"g0","type":"gauge","value":99},{"id":"g10","type":"gauge","value":1},{"id":"c0","type":"counter","delta":7}]"#;
        let r = c.post_json("/updates/", eleventh);
        assert_eq!(
            (r.status, r.text()),
            (409, full("gauge", 10, 1)),
            "{backend:?}"
        );
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(value(&c, "gauge", "g0"), (200, "1.5".into()));
        assert_eq!(value(&c, "counter", "c0"), (200, "5".into()));
        assert_eq!(value(&c, "gauge", "g10").0, 404);

        // Keyed: refused again on a retry (it was not recorded as applied), and the key is
        // still free for another request.
        for _ in 0..2 {
            let r = keyed(&c, "/updates/", "agent:1", eleventh);
            assert_eq!((r.status, r.text()), (409, full("gauge", 10, 1)));
        }
        let fits =
            r#"[{"id":"g0","type":"gauge","value":2.5},{"id":"c0","type":"counter","delta":1}]"#;
        let r = keyed(&c, "/updates/", "agent:1", fits);
        assert_eq!((r.status, r.text()), (200, r#"{"updated":2}"#.into()));
        let again = keyed(&c, "/updates/", "agent:1", fits);
        assert_eq!(again.status, 200, "a repeat of the applied write");
        assert_eq!(value(&c, "gauge", "g0"), (200, "2.5".into()));
        assert_eq!(value(&c, "counter", "c0"), (200, "6".into()));

        // Text updates: a new name is refused, a stored one passes.
        let r = c.post("/update/gauge/g10/1", b"");
        assert_eq!((r.status, r.text()), (409, full("gauge", 10, 1)));
        let r = c.request(
            "POST",
            "/update/gauge/g10/1",
            &[("Idempotency-Key", "t")],
            b"",
        );
        assert_eq!(r.status, 409);
        let r = c.request(
            "POST",
            "/update/gauge/g1/-4",
            &[("Idempotency-Key", "t")],
            b"",
        );
        assert_eq!(
            r.status,
            200,
            "the refused key was not recorded: {}",
            r.text()
        );
        assert_eq!(value(&c, "gauge", "g1"), (200, "-4".into()));

        // JSON updates likewise.
        let r = c.post_json("/update/", r#"{"id":"g10","type":"gauge","value":3}"#);
        assert_eq!((r.status, r.text()), (409, full("gauge", 10, 1)));
        let r = c.post_json("/update/", r#"{"id":"g2","type":"gauge","value":3}"#);
        assert_eq!(
            (r.status, r.text()),
            (200, r#"{"id":"g2","type":"gauge","value":3.0}"#.into())
        );
        assert_eq!(value(&c, "gauge", "g10").0, 404);

        // Counters count on their own: nine more fit, the eleventh does not.
        let nine: Vec<String> = (1..10)
            .map(|i| format!(r#"{{"id":"c{i}","type":"counter","delta":{i}}}"#))
            .collect();
        let r = c.post_json("/updates/", &format!("[{}]", nine.join(",")));
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c.post("/update/counter/c10/1", b"");
        assert_eq!((r.status, r.text()), (409, full("counter", 10, 1)));
        let r = c.post_json("/update/", r#"{"id":"c10","type":"counter","delta":1}"#);
        assert_eq!((r.status, r.text()), (409, full("counter", 10, 1)));
        let r = c.post_json(
            "/updates/",
            r#"[{"id":"c10","type":"counter","delta":1},{"id":"c11","type":"counter","delta":1}]"#,
        );
        assert_eq!((r.status, r.text()), (409, full("counter", 10, 2)));
        assert_eq!(c.post("/update/counter/c9/1", b"").status, 200);
        assert_eq!(value(&c, "counter", "c9"), (200, "10".into()));
        // A keyed counter write (a transaction in PostgreSQL) refused, its key left free.
        let tc = [("Idempotency-Key", "tc")];
        let r = c.request("POST", "/update/counter/c10/1", &tc, b"");
        assert_eq!((r.status, r.text()), (409, full("counter", 10, 1)));
        let r = c.request("POST", "/update/counter/c9/5", &tc, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(value(&c, "counter", "c9"), (200, "15".into()));

        let snapshot = c.get("/api/v1/snapshot").json();
        assert_eq!(snapshot["gauges"].as_object().unwrap().len(), 10);
        assert_eq!(snapshot["counters"].as_object().unwrap().len(), 10);
        let metrics = c.get("/metrics").text();
        assert!(
            metrics.contains("\ngolectra_metrics_limit 10\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"golectra_http_requests_total{route="/updates",code="409"} 4"#),
            "{metrics}"
        );
    }
}

/// Two servers share one database: writers racing to add new names through both get exactly
/// `MAX_METRICS` of them in, and the count the database keeps is the true one.
#[test]
fn postgres_counts_exactly_across_servers() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let a = TestServer::start_with(Backend::Postgres, |c| c.max_metrics = MaxMetrics(50));
    let dsn = a.database.as_ref().unwrap().dsn.clone();
    let config = golectra_server::config::Config {
        max_metrics: MaxMetrics(50),
        ..golectra_server::config::Config::for_tests(golectra_server::config::Storage::Postgres {
            dsn,
            ignored_file_settings: false,
        })
    };
    let b = golectra_server::Server::start(&config).unwrap();
    let clients = [a.client(), Client::new(b.local_addr())];
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = clients[t % 2].clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut applied = 0;
                for i in 0..20 {
                    let r = if i % 2 == 0 {
                        c.post(&format!("/update/gauge/t{t}_{i}/1"), b"")
                    } else {
                        let names = [format!("t{t}_{i}"), format!("t{t}_{i}b")];
                        c.post_json("/updates/", &gauges_json(names.clone(), 1.0))
                    };
                    match r.status {
                        200 if i % 2 == 0 => applied += 1,
                        200 => applied += 2,
                        409 => assert!(r.text().starts_with("MAX_METRICS is 50 gauges: ")),
                        other => panic!("{other}: {}", r.text()),
                    }
                }
                applied
            })
        })
        .collect();
    let applied: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut sql = a.database.as_ref().unwrap().connect();
    let stored: i64 = sql
        .query_one("SELECT count(*) FROM golectra_gauges", &[])
        .unwrap()
        .get(0);
    let counted: i64 = sql
        .query_one("SELECT gauges FROM golectra_metric_count", &[])
        .unwrap()
        .get(0);
    // Single writes fill the last place when a pair no longer fits: exactly 49 or 50 in.
    assert!((49..=50).contains(&stored), "{stored}");
    assert_eq!((applied as i64, counted), (stored, stored));
    // Rows deleted by hand free their places.
    sql.batch_execute(
        "DELETE FROM golectra_gauges WHERE name IN (SELECT name FROM golectra_gauges LIMIT 5)",
    )
    .unwrap();
    let room = 50 - (stored as usize - 5);
    let fill = gauges_json((0..room).map(|i| format!("later{i}")), 2.0);
    assert_eq!(clients[1].post_json("/updates/", &fill).status, 200);
    assert_eq!(clients[0].post("/update/gauge/one_more/1", b"").status, 409);
    let counted: i64 = sql
        .query_one("SELECT gauges FROM golectra_metric_count", &[])
        .unwrap()
        .get(0);
    assert_eq!(counted, 50);
    b.shutdown().unwrap();
}

/// A database migrated before the count existed: migration 004 counts the rows already there.
#[test]
fn postgres_migration_counts_the_rows_already_stored() {
    let Some(db) = golectra_testkit::fresh_postgres_dsn() else {
        return;
    };
    let options = golectra_server::store::postgres::PostgresOptions::new(&db.dsn, 1);
    drop(golectra_server::store::postgres::PostgresStore::open(&options).unwrap());
    // Back to schema version 3, with rows written meanwhile by a server without the count.
    let mut sql = db.connect();
    sql.batch_execute(
        "DROP TABLE golectra_metric_count;
         DROP FUNCTION golectra_count_inserted, golectra_count_deleted, golectra_count_truncated CASCADE;
         DELETE FROM golectra_schema_migrations WHERE version = 4;
         INSERT INTO golectra_gauges (name, value) SELECT 'g' || i, i FROM generate_series(1, 7) AS i;
         INSERT INTO golectra_counters (name, delta) VALUES ('c', 1)",
    )
    .unwrap();
    let options = golectra_server::store::postgres::PostgresOptions {
        max_metrics: MaxMetrics(8),
        ..options
    };
    let store = golectra_server::store::postgres::PostgresStore::open(&options).unwrap();
    use golectra_server::store::Store;
    assert_eq!(store.count(), Ok((7, 1)));
    let gauge = |name: &str| golectra_common::metric::Update::Gauge {
        name: name.into(),
        value: 1.0,
    };
    store.update(&gauge("g8"), None).unwrap().wait().unwrap();
    assert!(matches!(
        store.update(&gauge("g9"), None).map(|w| w.value),
        Err(golectra_server::store::StoreError::Full {
            limit: 8,
            stored: 8,
            adding: 1,
            ..
        })
    ));
}

/// The `<tr>` rows of a dashboard page: (data-name, whether sent hidden).
fn rows(html: &str) -> Vec<(String, bool)> {
    html.split("<tr data-name=\"")
        .skip(1)
        .map(|chunk| {
            let (name, rest) = chunk.split_once('"').unwrap();
            (name.to_owned(), rest.starts_with(" hidden>"))
        })
        .collect()
}

#[test]
fn the_dashboard_of_a_large_store_is_one_bounded_page_filtered_by_the_server() {
    for backend in backends() {
        let s = TestServer::start(backend);
        let c = s.client();
        // 3 000 gauges (ten of them named cpu…), 710 counters: 3 710 metrics.
        for chunk in 0..3 {
            let names = (0..1000).map(|i| match chunk * 1000 + i {
                n if n % 300 == 7 => format!("cpu_{n:04}"),
                n => format!("g{n:04}"),
            });
            assert_eq!(
                c.post_json("/updates/", &gauges_json(names, 0.5)).status,
                200
            );
        }
        let counters: Vec<String> = (0..710)
            .map(|i| format!(r#"{{"id":"c{i:03}","type":"counter","delta":1}}"#))
            .collect();
        assert_eq!(
            c.post_json("/updates/", &format!("[{}]", counters.join(",")))
                .status,
            200
        );

        let page = c.get("/");
        assert_eq!(page.status, 200);
        let html = page.text();
        let found = rows(&html);
        assert_eq!(found.len(), 500, "{backend:?}");
        assert!(found.iter().all(|(_, hidden)| !hidden));
        assert_eq!(found[0].0, "cpu_0007");
        assert!(html.len() < 700_000, "{} bytes", html.len());
        assert!(
            html.contains("3710 metrics, 500 a page: <b>rows 1–500 of 3710</b>"),
            "{html}"
        );
        assert!(html.contains("<span>page 1 of 8</span>"));
        assert!(html.contains("<a href=\"?page=2\">next ›</a>"));
        assert!(html.contains("Gauges <span class=\"count\">(3000)</span>"));
        assert!(html.contains("No counters on this page."));

        // The filter is applied by the server, case-insensitively, before paging.
        let html = c.get("/?q=CPU").text();
        let found = rows(&html);
        let expected: Vec<String> = (0..10).map(|k| format!("cpu_{:04}", k * 300 + 7)).collect();
        assert_eq!(
            found.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            expected
        );
        assert!(html.contains("Gauges <span class=\"count\">(10 of 3000)</span>"));
        assert!(html.contains("Counters <span class=\"count\">(0 of 710)</span>"));
        assert!(html.contains("<b>rows 1–10 of 10</b> matching"));
        assert!(html.contains("value=\"CPU\""));

        // Gauges fill pages 1 to 6, counters start on page 7; a page past the end is the last.
        let found = rows(&c.get("/?page=6").text());
        assert_eq!(found.len(), 500);
        assert_eq!(found.last().unwrap().0, "g2999");
        let found = rows(&c.get("/?page=7").text());
        let names: Vec<String> = found.iter().map(|r| r.0.clone()).collect();
        let expected: Vec<String> = (0..500).map(|i| format!("c{i:03}")).collect();
        assert_eq!(names, expected);
        let last = c.get("/?page=99&q=c");
        let html = last.text();
        assert!(html.contains("<span>page 2 of 2</span>"), "{html}");
        assert_eq!(rows(&html).len(), 720 - 500);
        assert!(html.contains("<a href=\"?q=c&amp;page=1\">‹ previous</a>"));

        for bad in ["/?page=0", "/?page=two", "/?q=%FF"] {
            let r = c.get(bad);
            assert_eq!(r.status, 400, "{bad}: {}", r.text());
        }
    }
}

/// A store that fits one page is sent whole, rows that do not match the filter `hidden`, so
/// the page's script can filter as the operator types (the behaviour of small dashboards).
#[test]
fn the_dashboard_of_a_small_store_is_sent_whole_with_the_filter_marked() {
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    let body = r#"[{"id":"cpu_load","type":"gauge","value":1},{"id":"mem","type":"gauge","value":2},{"id":"LoadAvg","type":"counter","delta":3}]"#;
    assert_eq!(c.post_json("/updates/", body).status, 200);
    let html = c.get("/?q=load").text();
    assert_eq!(
        rows(&html),
        [
            ("cpu_load".to_owned(), false),
            ("mem".to_owned(), true),
            ("loadavg".to_owned(), false)
        ]
    );
    assert!(html.contains("Gauges <span class=\"count\">(1 of 2)</span>"));
    assert!(html.contains("Counters <span class=\"count\">(1 of 1)</span>"));
    assert!(html.contains("<main id=\"tables\">\n") && !html.contains("id=\"pager\""));
}

#[test]
fn history_memory_is_bounded_in_total_and_keeps_the_first_metrics() {
    let options = HistoryOptions {
        interval: Duration::from_millis(20),
        points: 5,
        max_bytes: 0,
    };
    // Room for the series of exactly four six-byte names.
    let max_bytes = 4 * options.series_bytes(6);
    let s = TestServer::start_with(Backend::Memory, |c| {
        c.history = HistoryOptions {
            max_bytes,
            ..options
        }
    });
    let c = s.client();
    let early = gauges_json((0..3).map(|i| format!("early{i}")), 1.0);
    assert_eq!(c.post_json("/updates/", &early).status, 200);
    let full = |j: &serde_json::Value| j["points"].as_array().unwrap().len() == 5;
    eventually(Duration::from_secs(60), || {
        full(&c.get("/api/v1/history/gauge/early0").json()).then_some(())
    })
    .expect("the early metric gets its history");
    // A flood of new names: one more fits, the other 199 get no history, the early ones keep
    // theirs.
    let flood = gauges_json((0..200).map(|i| format!("f{i:05}")), 2.0);
    assert_eq!(c.post_json("/updates/", &flood).status, 200);
    let sample = |name: &str| -> f64 {
        let text = c.get("/metrics").text();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    eventually(Duration::from_secs(60), || {
        (sample("golectra_history_untracked_metrics") == 199.0).then_some(())
    })
    .expect("the flood is left without history");
    assert_eq!(sample("golectra_history_series"), 4.0);
    assert_eq!(sample("golectra_history_bytes"), max_bytes as f64);
    assert_eq!(sample("golectra_history_max_bytes"), max_bytes as f64);
    assert!(
        !c.get("/api/v1/history/gauge/f00000").json()["points"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let untracked = c.get("/api/v1/history/gauge/f00199").json();
    assert_eq!(untracked["points"], serde_json::json!([]), "{untracked}");
    let early = c.get("/api/v1/history/gauge/early2").json();
    assert!(full(&early), "{early}");
    // The dashboard says why the flood has no sparkline.
    let html = c.get("/?q=f00199").text();
    assert!(html.contains("HISTORY_MAX_BYTES is reached"), "{html}");
}
