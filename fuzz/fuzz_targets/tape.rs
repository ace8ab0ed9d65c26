//! Consumers read from their recorded YAML events against serde_yaml's value of them: the same
//! value or the same error, or a panic (see `tollgate::fuzzing::tape`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tollgate::fuzzing::tape(data);
});
