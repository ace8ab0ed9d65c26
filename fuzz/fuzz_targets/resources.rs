//! The resource-file loader: YAML text in, a snapshot or errors out, never a panic (see
//! `tollgate::fuzzing::load_resources`).
#![no_main]

use std::ffi::{c_char, c_int, c_void};

/// Upstream node hosts that are names reach `getaddrinfo` in the compiler. Fuzzed names must not
/// become DNS queries (this machine may send traffic to loopback only, and a lookup per input
/// would be slow), so this binary answers every lookup "name not known" (glibc `EAI_NONAME`):
/// the compiler's "cannot resolve" error path is fuzzed instead.
#[unsafe(no_mangle)]
pub extern "C" fn getaddrinfo(
    _node: *const c_char,
    _service: *const c_char,
    _hints: *const c_void,
    _res: *mut *mut c_void,
) -> c_int {
    -2
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tollgate::fuzzing::load_resources(data);
});
