//! Log messages handed to a host callback: model loads, the device `"auto"` chose and why,
//! internal errors, and what the libraries underneath (burn, its CUDA runtime) report through
//! the `log` crate. Silent until a callback is set.

use std::ffi::{c_char, c_void, CString};
use std::sync::RwLock;

use crate::status::{guard, Failure, Status};

/// How much a log message matters. A host receives messages up to the level it asked for.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// Something failed inside the library (an internal error, a panic caught at the boundary).
    Error = 1,
    /// Something the host may want to fix.
    Warn = 2,
    /// One line per notable event: a model loaded, the device `"auto"` chose.
    Info = 3,
    /// Details, mostly from the libraries underneath.
    Debug = 4,
}

/// Receives one log message: `level` is an `fqgan_log_level` value, `message` NUL-terminated
/// UTF-8 valid during the call only. It may be called from any thread that is inside an fqgan
/// call, and from the library's worker threads: it must be thread-safe, and must not call
/// fqgan functions.
pub type LogFn = Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, message: *const c_char)>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, i32, *const c_char),
    /// The host's pointer, kept as an address: the host vouches that the callback may use it
    /// from any thread.
    user_data: usize,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// The `log` crate's logger for the whole process, forwarding to [`SINK`].
struct Forward;

static FORWARD: Forward = Forward;

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(sink) = sink.as_ref() else { return };
        let level = match record.level() {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug | log::Level::Trace => LogLevel::Debug,
        };
        let target = record.target();
        let text = if target.starts_with("fqgan") {
            record.args().to_string()
        } else {
            format!("[{target}] {}", record.args())
        };
        let message = CString::new(text.replace('\0', " ")).expect("NULs replaced");
        // SAFETY: the host gave this callback and pointer to fqgan_set_log_callback for this use.
        unsafe { (sink.callback)(sink.user_data as *mut c_void, level as i32, message.as_ptr()) };
    }

    fn flush(&self) {}
}

/// Sends the library's log messages up to `max_level` (an `fqgan_log_level` value) to
/// `callback`, with `user_data`; `callback = NULL` silences them again (the default). The
/// setting is global for the process. Messages are English text for people, not for parsing.
///
/// Fails with `FQGAN_STATUS_INVALID_ARGUMENT` for an unknown level, and with
/// `FQGAN_STATUS_INTERNAL` when other Rust code in the process already installed a `log`
/// logger.
///
/// # Safety
/// `callback` must be safe to call with `user_data` from any thread until it is replaced.
#[no_mangle]
pub unsafe extern "C" fn fqgan_set_log_callback(callback: LogFn, max_level: i32, user_data: *mut c_void) -> Status {
    guard(|| {
        let Some(callback) = callback else {
            *SINK.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
            log::set_max_level(log::LevelFilter::Off);
            return Ok(());
        };
        let filter = match max_level {
            1 => log::LevelFilter::Error,
            2 => log::LevelFilter::Warn,
            3 => log::LevelFilter::Info,
            4 => log::LevelFilter::Debug,
            other => {
                return Err(Failure::invalid(format!(
                    "`max_level` is {other}; expected FQGAN_LOG_LEVEL_ERROR (1) .. FQGAN_LOG_LEVEL_DEBUG (4)"
                )))
            }
        };
        install()?;
        *SINK.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(Sink { callback, user_data: user_data as usize });
        log::set_max_level(filter);
        Ok(())
    })
}

/// Installs [`FORWARD`] as the process's logger, once.
fn install() -> Result<(), Failure> {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *INSTALLED.get_or_init(|| log::set_logger(&FORWARD).is_ok()) {
        Ok(())
    } else {
        Err(Failure::new(Status::Internal, "another `log` logger is installed in this process; fqgan cannot log"))
    }
}
