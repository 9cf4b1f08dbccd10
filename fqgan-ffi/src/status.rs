//! Status codes, the thread-local error message, and the guard every export runs its body in.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fqgan_core::runtime::Arg;

/// The result of every call that can fail. `FQGAN_STATUS_OK` is 0; on any other value
/// `fqgan_last_error()` explains what went wrong and names the argument at fault.
/// New codes may be added in later versions: treat unknown non-zero values as failures.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// A null pointer, a zero or inconsistent size, an unknown enum value or device string,
    /// an image of the wrong size, token ids outside their codebook, generation parameters out
    /// of range, a tokenizer that does not match a generator, or `.fqt` bytes that are
    /// malformed, corrupt or made by another model.
    InvalidArgument = 1,
    /// The output buffer is smaller than the required size (which was still written out).
    BufferTooSmall = 2,
    /// A file could not be read.
    Io = 3,
    /// The bytes are not a usable fqgan model (corrupt, truncated, wrong kind or config).
    InvalidModel = 4,
    /// The device could not be used (no CUDA driver, no such GPU, a build without CUDA).
    Device = 5,
    /// A bug inside fqgan (a Rust panic, caught at the boundary). The handle may still be
    /// used, but please report the message.
    Internal = 6,
    /// The progress callback asked to stop (returned non-zero); no output was written.
    Cancelled = 7,
}

/// An error on its way to the caller: the status to return and the message to keep.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: Status,
    pub message: String,
}

impl Failure {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Status::InvalidArgument, message)
    }
}

impl From<fqgan_core::Error> for Failure {
    fn from(error: fqgan_core::Error) -> Self {
        use fqgan_core::Error as E;
        let status = match &error {
            E::Io { .. } => Status::Io,
            E::Config(_) | E::Weights { .. } => Status::InvalidModel,
            E::Input(_) | E::Image { .. } | E::Tokens { .. } => Status::InvalidArgument,
            E::Argument { arg, index, message } => {
                let index = index.map(|i| format!("[{i}]")).unwrap_or_default();
                return Self::invalid(format!("`{}{index}` {message}", c_name(*arg)));
            }
            E::Device(_) => Status::Device,
        };
        Self::new(status, error.to_string())
    }
}

/// The C parameter a runtime argument arrives in (the same in every call that takes it).
fn c_name(arg: Arg) -> &'static str {
    match arg {
        Arg::ImageSize => "image->width` x `image->height",
        Arg::TokenCount => "token_count",
        Arg::Token => "tokens",
        Arg::CodebookCount => "codebook_count",
        Arg::Codebook => "codebooks",
        Arg::ClassId => "params->class_id",
        Arg::Count => "params->count",
        Arg::CfgScale => "params->cfg_scale",
        Arg::Temperature => "params->temperature",
        Arg::TopP => "params->top_p",
        Arg::Overlap => "params->overlap",
        Arg::PrefixRows => "prefix_rows",
        Arg::PrefixCount => "prefix_count",
        Arg::Prefix => "prefix",
        Arg::WeightPrecision => "precision",
    }
}

pub(crate) type Outcome<T = ()> = Result<T, Failure>;

/// `value` for a `uint32_t` field of a C struct. The config limits (`docs/limits.md`) keep every
/// size of a loaded model far below 2^32, so this does not fail today; should a limit ever grow
/// past it, the call fails naming the field instead of handing C a wrapped number.
pub(crate) fn c_u32(field: &str, value: usize) -> Outcome<u32> {
    u32::try_from(value)
        .map_err(|_| Failure::new(Status::Internal, format!("`{field}` is {value}, which does not fit a uint32_t")))
}

thread_local! {
    /// Per thread, so that concurrent callers never see each other's messages.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message with an interior NUL (from a path, say) is cut there rather than lost.
    let bytes = message.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = CString::new(&bytes[..end]).expect("no interior NUL before `end`");
    LAST_ERROR.with(|slot| *slot.borrow_mut() = text);
}

/// The message of the last failed call on this thread ("" after a successful one).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Runs an export's body: records its message and turns a panic into `Status::Internal`, so
/// that no unwind ever crosses into C (which would be undefined behaviour).
pub(crate) fn guard(body: impl FnOnce() -> Outcome) -> Status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            set_last_error("");
            Status::Ok
        }
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            let message = format!("internal error in fqgan (please report it): panic: {detail}");
            log::error!("{message}");
            set_last_error(&message);
            Status::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_str().unwrap().to_owned()
    }

    #[test]
    fn guard_reports_failures_and_panics_and_clears_on_success() {
        assert_eq!(guard(|| Err(Failure::invalid("`tokens` is null"))), Status::InvalidArgument);
        assert_eq!(last_error(), "`tokens` is null");
        assert_eq!(guard(|| panic!("boom")), Status::Internal);
        assert!(last_error().contains("panic: boom"), "{}", last_error());
        assert_eq!(guard(|| Ok(())), Status::Ok);
        assert_eq!(last_error(), "");
    }

    #[test]
    fn c_counts_never_wrap() {
        assert_eq!(c_u32("size", 1 << 24).unwrap(), 1 << 24);
        let failure = c_u32("size", 1 << 32).unwrap_err();
        assert_eq!(failure.status, Status::Internal);
        assert!(failure.message.contains("`size` is 4294967296"), "{}", failure.message);
    }

    #[test]
    fn messages_are_per_thread_and_survive_interior_nul() {
        guard(|| Err(Failure::invalid("main thread")));
        std::thread::spawn(|| {
            guard(|| Err(Failure::invalid("a\0b")));
            assert_eq!(last_error(), "a");
        })
        .join()
        .unwrap();
        assert_eq!(last_error(), "main thread");
    }
}
