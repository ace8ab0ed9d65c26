//! The path normaliser: any bytes in, a 400 or a normalised path out (see `tollgate::fuzzing::path`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::fuzzing::path(data));
