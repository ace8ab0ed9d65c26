//! The Basic, hmac Signature and JWT parsers, alone and through `auth::authenticate` on a fixed
//! config (see `tollgate::fuzzing::auth`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tollgate::fuzzing::auth(data);
});
