//! Consumers recognised from their raw text before libyaml reads them, against a plain reading
//! of the same text: the same items, or a panic (see `tollgate::fuzzing::raw_text`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tollgate::fuzzing::raw_text(data);
});
