//! Routing and the API handlers (docs/http-api.md). Routing is a plain `match` on the method and the
//! path segments; every endpoint answers with and without a trailing slash, a known path with
//! the wrong method gets 405 with `Allow`, anything else 404.

use std::borrow::Cow;
use std::collections::BTreeMap;

use golectra_common::metric::{self, InvalidMetric, Metric, MetricId, MetricKind, Update};
use golectra_common::signed_request;
use percent_encoding::percent_decode_str;
use serde::de::{Deserializer, Error as _, IgnoredAny, SeqAccess, Visitor};

use super::deletes;
use super::reply::{ApiError, Reply};
use super::request::{Incoming, Method};
use super::selection;
use crate::app::App;
use crate::store::{Batch, Key, StoreError, Value, Written};
use crate::traffic::Route;

const GET: &str = "GET, HEAD";
const GET_DELETE: &str = "GET, HEAD, DELETE";
const POST: &str = "POST";

/// Serves one request addressed to `route` (see [`Route::of`]): the reply, and when it may be
/// sent — at once, or once the write it acknowledges is durable (see [`Written`]).
pub fn route(app: &App, req: &Incoming, route: Route) -> Result<Written<Reply>, ApiError> {
    let segments = Route::segments(&req.path);
    let is_get = matches!(req.method, Method::Get | Method::Head);
    let is_post = req.method == Method::Post;
    let allow = |ok: bool, methods: &'static str| {
        if ok {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(&req.method_name, methods))
        }
    };
    match route {
        Route::Dashboard => {
            allow(is_get, GET)?;
            super::dashboard::render(app, &req.query).map(Written::now)
        }
        Route::UpdateJson => {
            allow(is_post, POST)?;
            json_update(app, req)
        }
        Route::UpdateText => {
            allow(is_post, POST)?;
            match &segments[1..] {
                [kind, name, value] => text_update(app, req, kind, name, value),
                [_] | [_, ""] => Err(ApiError::not_found(
                    "missing metric name: use /update/{type}/{name}/{value}",
                )),
                [_, _] => Err(ApiError::not_found(
                    "missing metric value: use /update/{type}/{name}/{value}",
                )),
                _ => Err(ApiError::not_found(
                    "too many path segments: use /update/{type}/{name}/{value}",
                )),
            }
        }
        Route::ValueJson => {
            allow(is_post, POST)?;
            json_value(app, req).map(Written::now)
        }
        Route::ValueText => {
            let is_delete = req.method == Method::Delete;
            allow(is_get || is_delete, GET_DELETE)?;
            match &segments[1..] {
                [kind, name] if is_delete => {
                    let kind = MetricKind::parse(&decode_segment(kind)?)?;
                    deletes::delete_value(app, req, kind, path_name(name)?)
                }
                [kind, name] => text_value(app, kind, name).map(Written::now),
                [_] => Err(ApiError::not_found(
                    "missing metric name: use /value/{type}/{name}",
                )),
                _ => Err(ApiError::not_found(
                    "too many path segments: use /value/{type}/{name}",
                )),
            }
        }
        Route::Updates => {
            allow(is_post, POST)?;
            batch_update(app, req)
        }
        Route::Ping => {
            allow(is_get, GET)?;
            app.store.ping()?;
            Ok(Written::now(Reply::text(200, "ok")))
        }
        Route::Snapshot => {
            allow(is_get, GET)?;
            snapshot(app, &req.query).map(Written::now)
        }
        Route::Metrics => {
            allow(is_get, GET)?;
            super::metrics::render(app).map(Written::now)
        }
        Route::History => {
            allow(is_get, GET)?;
            match &segments[3..] {
                [kind, name] => history(app, kind, name, &req.query).map(Written::now),
                [_] => Err(ApiError::not_found(
                    "missing metric name: use /api/v1/history/{type}/{name}",
                )),
                _ => Err(ApiError::not_found("use /api/v1/history/{type}/{name}")),
            }
        }
        Route::Series => {
            allow(req.method == Method::Delete, "DELETE")?;
            deletes::delete_series(app, req)
        }
        Route::Other => Err(ApiError::not_found(format!(
            "no such endpoint: {}",
            req.path
        ))),
    }
}

/// Percent-decodes a path segment.
fn decode_segment(segment: &str) -> Result<Cow<'_, str>, ApiError> {
    percent_decode_str(segment).decode_utf8().map_err(|_| {
        ApiError::bad_request("path segment is not valid UTF-8 after percent-decoding")
    })
}

/// A name from the path: an empty one is a missing one (404), other problems are 400.
fn path_name(segment: &str) -> Result<String, ApiError> {
    let decoded = decode_segment(segment)?;
    match metric::validate_name(&decoded) {
        Ok(name) => Ok(name.into_owned()),
        Err(InvalidMetric::EmptyName) => Err(ApiError::not_found("missing metric name")),
        Err(e) => Err(e.into()),
    }
}

/// Strict signature mode (docs/signing.md): with a key and `REQUIRE_SIGNATURE`, a write must
/// carry an `Idempotency-Key` and a `Golectra-Signature` over its endpoint, that key, a fresh
/// time and its body. `HashSHA256` alone is not enough: any body the key ever signed (a reply
/// of this server included) would pass it again, as often as it is sent.
fn check_signed(app: &App, req: &Incoming) -> Result<(), ApiError> {
    let Some(key) = app.key.as_deref().filter(|_| app.require_signature) else {
        return Ok(());
    };
    let Some(header) = req.request_signature.as_deref() else {
        return Err(ApiError::bad_request(format!(
            "this server requires {} on every write (strict mode, REQUIRE_SIGNATURE): HashSHA256 alone can be replayed",
            signed_request::HEADER
        )));
    };
    let Some(idempotency_key) = req.idempotency_key.as_deref() else {
        return Err(ApiError::bad_request(format!(
            "this server requires an {} on every write (strict mode, REQUIRE_SIGNATURE), covered by {}",
            crate::store::idempotency::HEADER,
            signed_request::HEADER
        )));
    };
    signed_request::verify(
        key,
        header,
        signed_request::unix_now(),
        &req.path,
        idempotency_key,
        &req.body,
    )
    .map_err(ApiError::bad_request)
}

fn text_update(
    app: &App,
    req: &Incoming,
    kind: &str,
    name: &str,
    value: &str,
) -> Result<Written<Reply>, ApiError> {
    let kind = MetricKind::parse(&decode_segment(kind)?)?;
    let name = path_name(name)?;
    let value = decode_segment(value)?;
    check_signed(app, req)?;
    let update = match kind {
        MetricKind::Gauge => Update::Gauge {
            name,
            value: metric::parse_gauge(&value)?,
        },
        MetricKind::Counter => Update::Counter {
            name,
            delta: metric::parse_counter(&value)?,
        },
    };
    let key = key_of(req, "update-text");
    let written = app.store.update(&update, key.as_ref()).map_err(warn_full)?;
    if first_time(app, &written) {
        count_ingested(app, std::slice::from_ref(&update));
        app.audit
            .record(|| vec![update.name().to_owned()], req.origin());
    }
    Ok(written.map(|_| Reply::text(200, "ok")))
}

/// The request's idempotency key for the write endpoint `route` (a fixed name per endpoint, so
/// the same key sent to another endpoint is another request).
fn key_of(req: &Incoming, route: &str) -> Option<Key> {
    let text = req.idempotency_key.as_deref()?;
    Some(Key::new(text, route, &req.path, &req.body))
}

/// Logs a write refused at `MAX_METRICS` as a warning, at most once a minute (the client gets
/// the reason in its 409; the operator needs to hear of it once).
fn warn_full(e: StoreError) -> StoreError {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    static HELD_BACK: AtomicU64 = AtomicU64::new(0);
    if matches!(e, StoreError::Full { .. }) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = LAST.load(Ordering::Relaxed);
        if now >= last + 60
            && LAST
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let held_back = HELD_BACK.swap(0, Ordering::Relaxed);
            log::warn!(
                "write refused with 409: {e} ({held_back} more refused since the last such line); raise MAX_METRICS (docs/limits.md)"
            );
        } else {
            HELD_BACK.fetch_add(1, Ordering::Relaxed);
        }
    }
    e
}

/// Whether a successful write was applied now (to be counted and audited), or was a repeat of
/// a keyed write (counted as a repeat only).
fn first_time<T>(app: &App, written: &Written<T>) -> bool {
    if written.repeat {
        app.stats.repeat();
    }
    !written.repeat
}

fn text_value(app: &App, kind: &str, name: &str) -> Result<Reply, ApiError> {
    let kind = MetricKind::parse(&decode_segment(kind)?)?;
    let name = path_name(name)?;
    match app.store.get(kind, &name)? {
        Some(Value::Gauge(v)) => Ok(Reply::text(200, metric::format_gauge(v))),
        Some(Value::Counter(v)) => Ok(Reply::text(200, v.to_string())),
        None => Err(not_stored(kind, &name)),
    }
}

fn count_ingested(app: &App, updates: &[Update]) {
    for u in updates {
        match u {
            Update::Gauge { .. } => app.stats.ingested(1, 0),
            Update::Counter { .. } => app.stats.ingested(0, 1),
        }
    }
}

/// `GET /api/v1/history/{type}/{name}`: the metric's recent points, oldest first; with
/// `?match=`, those of every metric of that base name the terms select.
fn history(app: &App, kind: &str, name: &str, query: &str) -> Result<Reply, ApiError> {
    let kind = MetricKind::parse(&decode_segment(kind)?)?;
    let name = path_name(name)?;
    if let Some(matcher) = selection::matcher(query)? {
        return selection::history(app, kind, &name, &matcher);
    }
    let Some(current) = app.store.get(kind, &name)? else {
        return Err(not_stored(kind, &name));
    };
    let (points, changed_at_ms) = app.history.series(kind, &name).unwrap_or_default();
    let options = app.history.options();
    #[derive(serde::Serialize)]
    struct Body<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        value: Value,
        interval_seconds: f64,
        capacity: usize,
        changed_at_ms: Option<i64>,
        points: Vec<(i64, Value)>,
    }
    let body = Body {
        id: &name,
        kind: kind.as_str(),
        value: current,
        interval_seconds: options.interval.as_secs_f64(),
        capacity: options.points,
        changed_at_ms,
        points,
    };
    Ok(Reply::json(
        serde_json::to_vec(&body).expect("numbers and strings always serialize"),
    ))
}

fn not_stored(kind: MetricKind, name: &str) -> ApiError {
    ApiError::not_found(format!("no {kind} named {name:?}"))
}

fn malformed(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("malformed JSON: {e}"))
}

fn metric_json(name: &str, value: Value) -> Vec<u8> {
    let metric = match value {
        Value::Gauge(v) => Metric::gauge(name, v),
        Value::Counter(v) => Metric::counter(name, v),
    };
    serde_json::to_vec(&metric).expect("a metric always serializes")
}

fn json_update(app: &App, req: &Incoming) -> Result<Written<Reply>, ApiError> {
    let metric: Metric = serde_json::from_slice(&req.body).map_err(malformed)?;
    let update = metric.to_update()?;
    check_signed(app, req)?;
    let key = key_of(req, "update-json");
    let written = app.store.update(&update, key.as_ref()).map_err(warn_full)?;
    if first_time(app, &written) {
        count_ingested(app, std::slice::from_ref(&update));
        app.audit
            .record(|| vec![update.name().to_owned()], req.origin());
    }
    Ok(written.map(|stored| Reply::json(metric_json(update.name(), stored))))
}

fn json_value(app: &App, req: &Incoming) -> Result<Reply, ApiError> {
    let id: MetricId = serde_json::from_slice(&req.body).map_err(malformed)?;
    let kind = MetricKind::parse(&id.kind)?;
    let name = metric::validate_name(&id.id)?;
    match app.store.get(kind, &name)? {
        Some(value) => Ok(Reply::json(metric_json(&name, value))),
        None => Err(not_stored(kind, &name)),
    }
}

fn batch_update(app: &App, req: &Incoming) -> Result<Written<Reply>, ApiError> {
    let updates = decode_batch(&req.body, app.limits.max_batch_items)?;
    check_signed(app, req)?;
    let count = updates.len();
    let gauges = updates
        .iter()
        .filter(|u| matches!(u, Update::Gauge { .. }))
        .count();
    let batch = Batch::aggregate(updates).map_err(|e| {
        ApiError::bad_request(format!(
            "item {}: counter {:?} overflows within the batch: the sum of its deltas must stay within a 64-bit signed integer",
            e.index, e.name
        ))
    })?;
    let key = key_of(req, "updates");
    // An empty batch applies nothing; with a key it still goes to the store, which records the
    // key (a later request with the same key and another body is then refused).
    let written = if batch.is_empty() && key.is_none() {
        Written::now(())
    } else {
        let written = app.store.apply(&batch, key.as_ref()).map_err(warn_full)?;
        if first_time(app, &written) && !batch.is_empty() {
            app.stats.ingested(gauges, count - gauges);
            app.audit.record(|| batch.names(), req.origin());
        }
        written
    };
    Ok(written.map(|()| Reply::json(format!("{{\"updated\":{count}}}").into_bytes())))
}

/// Decodes a JSON array of metrics, validating each; errors name the index of the bad item.
pub fn decode_batch(body: &[u8], max_items: usize) -> Result<Vec<Update>, ApiError> {
    struct Items {
        max: usize,
    }
    impl<'de> Visitor<'de> for Items {
        type Value = Result<Vec<Update>, ApiError>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of metrics")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(self.max));
            loop {
                let index = out.len();
                if index == self.max {
                    if seq.next_element::<IgnoredAny>()?.is_some() {
                        return Ok(Err(ApiError::too_large(format!(
                            "batch has more than {} items: split it",
                            self.max
                        ))));
                    }
                    break;
                }
                let metric: Metric = match seq.next_element() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => return Err(A::Error::custom(format!("item {index}: {e}"))),
                };
                match metric.to_update() {
                    Ok(u) => out.push(u),
                    Err(e) => return Ok(Err(ApiError::bad_request(format!("item {index}: {e}")))),
                }
            }
            Ok(Ok(out))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = de
        .deserialize_seq(Items { max: max_items })
        .map_err(malformed)?;
    let updates = result?;
    de.end().map_err(malformed)?;
    Ok(updates)
}

/// `GET /api/v1/snapshot`: every stored metric, or with `?match=` those the terms select.
fn snapshot(app: &App, query: &str) -> Result<Reply, ApiError> {
    let matcher = selection::matcher(query)?.unwrap_or_default();
    let snap = app.store.read_all()?;
    #[derive(serde::Serialize)]
    struct Body<'a> {
        gauges: BTreeMap<&'a str, f64>,
        counters: BTreeMap<&'a str, i64>,
    }
    let body = Body {
        gauges: snap
            .gauges
            .iter()
            .filter(|(k, ..)| matcher.matches(k))
            .map(|(k, v, _)| (k.as_str(), *v))
            .collect(),
        counters: snap
            .counters
            .iter()
            .filter(|(k, ..)| matcher.matches(k))
            .map(|(k, v, _)| (k.as_str(), *v))
            .collect(),
    };
    Ok(Reply::json(
        serde_json::to_vec(&body).expect("maps of numbers always serialize"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_errors_name_the_index() {
        let err = decode_batch(
            br#"[{"id":"a","type":"gauge","value":1},{"id":"b","type":"nope"}]"#,
            10,
        )
        .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.starts_with("item 1: unknown metric type"),
            "{}",
            err.message
        );
        let err = decode_batch(
            br#"[{"id":"a","type":"gauge","value":1},{"id":"b","type":"counter","delta":"x"}]"#,
            10,
        )
        .unwrap_err();
        assert!(err.message.contains("item 1:"), "{}", err.message);
        let err = decode_batch(br#"[{"id":"a","type":"gauge"}]"#, 10).unwrap_err();
        assert_eq!(err.message, "item 0: gauge without \"value\"");
    }

    #[test]
    fn batch_limits_and_shapes() {
        let three = br#"[{"id":"a","type":"counter","delta":1},{"id":"a","type":"counter","delta":1},{"id":"a","type":"counter","delta":1}]"#;
        assert_eq!(decode_batch(three, 3).unwrap().len(), 3);
        assert_eq!(decode_batch(three, 2).unwrap_err().status, 413);
        assert_eq!(decode_batch(b"[]", 2).unwrap(), vec![]);
        assert_eq!(decode_batch(b"{}", 2).unwrap_err().status, 400);
        assert_eq!(decode_batch(b"[] x", 2).unwrap_err().status, 400);
    }
}
