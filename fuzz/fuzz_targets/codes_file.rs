//! The codes-file reader (`train-far` input) on arbitrary bytes: Ok or a clear error, never a
//! panic or an unbounded allocation.

#![no_main]

use std::path::Path;

use fqgan::train::codes::Codes;
use fqgan::weights::TensorFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz.codes");
    if let Ok(file) = TensorFile::from_bytes(data, source) {
        let _ = Codes::from_tensor_file(&file, source);
    }
});
