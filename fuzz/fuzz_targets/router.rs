//! The route matcher against a linear reference (see `tollgate::fuzzing::router`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::fuzzing::router(data));
