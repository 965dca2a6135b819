//! Arbitrary bytes, read as UTF-8 (lossily), through the whole compiler and every renderer.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check(&String::from_utf8_lossy(data));
});
