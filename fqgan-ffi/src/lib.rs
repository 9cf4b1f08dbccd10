//! `libfqgan`: the C API of FQGAN, for game engines and any language with a C FFI.
//!
//! The header `include/fqgan.h` is generated from this crate by cbindgen
//! (`fqgan-ffi/cbindgen.toml`); the test `header_is_up_to_date` fails when it drifts.
//! Conventions, which every export follows:
//! - each fallible call returns a `Status` and leaves a thread-local message for
//!   `fqgan_last_error`; no panic crosses the boundary ([`status::guard`]);
//! - every pointer, size and enum value from C is checked before use ([`args`]);
//! - outputs go to caller-owned buffers with a "required size" query.
//!
//! Sections of the header follow the modules: version, errors, tokenizer, generator, `.fqt`
//! token files.

mod args;
mod engine;
mod status;

// The header's sections, in order: cbindgen emits modules as they are declared.
mod tokenizer;

mod generator;

mod fqt;

use std::ffi::c_char;

pub use fqt::{FqtCoding, FqtInfo, FqtWriteParams, FQGAN_FQT_MAX_CODEBOOKS};
pub use generator::{GenerateParams, Generator, GeneratorInfo, GeneratorParams, ProgressFn};
pub use status::Status;
pub use tokenizer::{CodebookInfo, Image, PixelFormat, Tokenizer, TokenizerInfo, TokenizerParams};

/// The ABI this header describes. Bumped on any incompatible change to a signature, struct
/// layout or enum value; compare it with `fqgan_abi_version()` at start-up.
pub const FQGAN_ABI_VERSION: u32 = 1;

/// The library's version, "MAJOR.MINOR.PATCH". Static: never free it.
#[no_mangle]
pub extern "C" fn fqgan_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The `FQGAN_ABI_VERSION` the library was built with. A program built against another
/// value must not use the library.
#[no_mangle]
pub extern "C" fn fqgan_abi_version() -> u32 {
    FQGAN_ABI_VERSION
}

/// The message of the last failed call on the calling thread, naming the argument or file at
/// fault; "" after a successful call. Never NULL. Valid until the next `fqgan_` call on this
/// thread: copy it to keep it.
#[no_mangle]
pub extern "C" fn fqgan_last_error() -> *const c_char {
    status::last_error_ptr()
}
