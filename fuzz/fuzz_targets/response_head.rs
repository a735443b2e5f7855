//! The direct upstream client's HTTP/1 response-head parser, whole and split at any point.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    sluice_proxy::upstream::direct_fuzz::response_head(rest, usize::from(cut));
});
