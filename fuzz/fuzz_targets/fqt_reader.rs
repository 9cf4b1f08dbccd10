//! The `.fqt` reader on arbitrary bytes: it must return (Ok or a clear error), never panic,
//! hang or allocate without bound.
//!
//! Each input is tried twice: as a whole file, and with a valid checksum appended, because
//! nearly every random mutation fails the checksum and the interesting checks lie behind it.

#![no_main]

use std::path::Path;

use fqgan::tokens::TokenFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz.fqt");
    let _ = TokenFile::from_bytes(data, source);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    if let Ok(file) = TokenFile::from_bytes(&sealed, source) {
        // Whatever parses must be writable, and read back as itself. (Not byte-identical:
        // padding bits and range-coder tails have more than one valid spelling.)
        let bytes = file.to_bytes().expect("a parsed file is valid");
        assert_eq!(TokenFile::from_bytes(&bytes, source).expect("rewritten file parses"), file);
    }
});
