//! `libfqgan`: the C API of FQGAN, for game engines and any language with a C FFI.
//!
//! The header `include/fqgan.h` is generated from this crate by cbindgen
//! (`fqgan-ffi/cbindgen.toml`); the test `header_is_up_to_date` fails when it drifts.
//! Conventions, which every export follows:
//! - each fallible call returns a `Status` and leaves a thread-local message for
//!   `fqgan_last_error`; no panic crosses the boundary ([`status::guard`]);
//! - every pointer, size and enum value from C is checked before use ([`args`]);
//! - outputs go to caller-owned buffers with a "required size" query;
//! - the ABI only grows. A params struct that a `*_default()` function returns by value cannot
//!   gain fields: a caller built against the older header reserves the older size for the
//!   returned value (and passes that struct back with the newer `struct_size`). New options
//!   come as new functions (`fqgan_generate_completion` beside `fqgan_generate`).
//!
//! Sections of the header follow the modules: logging, version, errors, threads and devices,
//! tokenizer, generator, `.fqt` token files, whole images to and from `.fqt`.

mod args;
mod status;

// Sections of the header after the version, error and thread calls below.
mod log;

// The header's sections, in order: cbindgen emits modules as they are declared.
mod tokenizer;

mod generator;

mod fqt;

mod fqt_image;

use std::ffi::c_char;

pub use fqt::{FqtCoding, FqtInfo, FqtWriteParams, FQGAN_FQT_MAX_CODEBOOKS};
pub use fqt_image::{FqtImageParams, FQGAN_OVERLAP_DEFAULT};
pub use generator::{GenerateParams, Generator, GeneratorInfo, GeneratorParams, ProgressFn, WeightPrecision};
pub use log::{LogFn, LogLevel};
pub use status::Status;
pub use tokenizer::{CodebookInfo, Image, PixelFormat, Tokenizer, TokenizerInfo, TokenizerParams};

/// The ABI this header describes. Bumped on any incompatible change to a signature, struct
/// layout or enum value; compare it with `fqgan_abi_version()` at start-up.
pub const FQGAN_ABI_VERSION: u32 = 1;

/// Additions that keep the ABI compatible (new functions, new trailing struct fields), counted
/// from 0 within one `FQGAN_ABI_VERSION`; compare it with `fqgan_abi_minor_version()` before
/// calling a function added later. 1: `fqgan_set_num_threads`, `fqgan_get_num_threads`.
/// 2: `fqgan_tokenizer_load_builtin`, `fqgan_generator_load_builtin`,
/// `fqgan_generator_get_class_name`. 3: `fqgan_fqt_encode_image`, `fqgan_fqt_decode_image`,
/// `fqgan_fqt_image_params_default`, `fqgan_set_log_callback`, `fqgan_device_count`,
/// `fqgan_device_name`, `fqgan_generate_completion`, and the `"auto"` device.
/// 4: `fqgan_tokenizer_load_file_with_progress`, `fqgan_tokenizer_load_memory_with_progress`,
/// `fqgan_generator_load_file_with_progress`, `fqgan_generator_load_memory_with_progress`.
/// 5: `fqgan_generator_set_weight_precision`.
pub const FQGAN_ABI_MINOR_VERSION: u32 = 5;

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

/// The `FQGAN_ABI_MINOR_VERSION` the library was built with: functions added in a minor
/// version above this one are missing.
#[no_mangle]
pub extern "C" fn fqgan_abi_minor_version() -> u32 {
    FQGAN_ABI_MINOR_VERSION
}

/// Sets how many threads the CPU devices ("cpu", "ndarray") compute with, for the whole
/// process (one pool, shared by every handle). Call it once, before the first model loads:
/// the pool starts then and cannot be resized. 0 means the default: the `FQGAN_NUM_THREADS`
/// environment variable, else one thread per logical CPU.
///
/// Fails with `FQGAN_STATUS_INVALID_ARGUMENT` for more than 1024 threads, or when the pool
/// already runs with another count.
#[no_mangle]
pub extern "C" fn fqgan_set_num_threads(threads: u32) -> Status {
    status::guard(|| {
        let wanted = (threads != 0).then_some(threads as usize);
        fqgan_core::threads::configure(wanted)?;
        Ok(())
    })
}

/// The number of threads the CPU devices compute with (starting the pool with the default
/// count when nothing has set it).
#[no_mangle]
pub extern "C" fn fqgan_get_num_threads() -> u32 {
    fqgan_core::threads::configure(None).unwrap_or_else(|_| fqgan_core::threads::current()) as u32
}

/// The devices this build of the library can use on this machine, named by
/// `fqgan_device_name`: "cpu" and "ndarray", then "cuda:0", "cuda:1", ... for each CUDA device
/// that answers (looked for once, on the first call; none without the `cuda` feature). Any of
/// them, or "auto" (the first CUDA device, else "cpu", with the reason logged), goes in a
/// params struct's `device`.
#[no_mangle]
pub extern "C" fn fqgan_device_count() -> u32 {
    device_names().len() as u32
}

/// Writes to `*name` the device at `index` (0 .. `fqgan_device_count()` - 1). Static: never
/// free it.
///
/// # Safety
/// `name` must be NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn fqgan_device_name(index: u32, name: *mut *const c_char) -> Status {
    status::guard(|| {
        let names = device_names();
        let found = names.get(index as usize).ok_or_else(|| {
            status::Failure::invalid(format!("`index` is {index}; there are {} devices", names.len()))
        })?;
        args::arg(name.cast_const(), "name")?;
        name.write(found.as_ptr());
        Ok(())
    })
}

fn device_names() -> &'static [std::ffi::CString] {
    static NAMES: std::sync::OnceLock<Vec<std::ffi::CString>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| fqgan_core::device::available().iter().map(|d| tokenizer::c_string(&d.to_string())).collect())
}
