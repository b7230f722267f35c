//! `POST /updates` body decoding: arbitrary bytes give a bounded list of valid updates or an
//! API error (400/413), never a panic; the item limit is respected.
#![no_main]

use golectra_server::http::router::decode_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(items) = decode_batch(data, 64) {
        assert!(items.len() <= 64);
    }
});
