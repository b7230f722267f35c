//! The single-metric decoders: the JSON metric of `POST /update` and `/value`, and the text
//! form of `/update/{type}/{name}/{value}`. Accepted values must survive a round trip.
#![no_main]

use golectra_common::metric::{Metric, Update, format_gauge, parse_gauge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(metric) = serde_json::from_slice::<Metric>(data)
        && let Ok(update) = metric.to_update()
    {
        if let Update::Gauge { value, .. } = update {
            assert!(value.is_finite());
        }
    }
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '/');
    let (kind, name, value) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let _ = Update::from_text(kind, name, value);
    if let Ok(v) = parse_gauge(&text) {
        assert!(v.is_finite());
        assert_eq!(parse_gauge(&format_gauge(v)).map(f64::to_bits), Ok(v.to_bits()));
    }
});
