//! Gzip inflation with a limit: arbitrary bytes inflate to at most the limit or fail as corrupt
//! or too large, never a panic or an unbounded allocation.
#![no_main]

use golectra_common::gzip::inflate;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = inflate(data, LIMIT) {
        assert!(out.len() <= LIMIT);
    }
});
