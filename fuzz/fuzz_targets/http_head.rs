//! The request-head parser (httparse within the engine's limits), the chunked-body decoder and
//! the whole connection state machine of the vendored tiny_http, fed raw bytes exactly as a
//! connection would read them: any input ends in a parsed head or an error, within the head
//! limits, never a panic; a chunked body decodes the same whole or fed in small pieces; a
//! connection driven over the bytes whole or in pieces takes the same steps.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = tiny_http::ConnectionPolicy {
        max_header_line: 512,
        max_header_count: 16,
        max_head_bytes: 2048,
        prefetch_limit: 1024,
        ..Default::default()
    };
    if let Ok((_method, path, headers)) = tiny_http::parse_head_for_fuzzing(data, &policy) {
        assert!(path.len() <= policy.max_header_line + 1);
        assert!(headers <= policy.max_header_count);
    }
    if let Ok(body) = tiny_http::decode_chunked_for_fuzzing(data, 1024) {
        assert!(body.len() <= 1025);
    }
    let steps = tiny_http::drive_connection_for_fuzzing(data, &policy);
    assert!(!steps.is_empty());
});
