//! The direct upstream client's chunked-body decoder, whole and one byte at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice_proxy::upstream::direct_fuzz::chunked_body(data);
});
