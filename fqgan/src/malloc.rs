//! The process allocator's treatment of the large buffers tensor work frees and allocates
//! again at every step: an option for programs that own their process (the command-line
//! tools, the benchmarks), never set by the library on its own.

/// Asks glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.
///
/// By default glibc maps every allocation above a threshold (128 KiB, rising up to 32 MiB as
/// such blocks are freed) straight from the OS and unmaps it on free, so each training step
/// page-faults its activations and gradients in again, 4 KiB at a time, zeroed by the kernel:
/// 5% of a small-dual-ds8 step in a profile, and ~10% of its time once removed. The cost is
/// that the process keeps its peak heap. Does nothing on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes two tuning parameters of the allocator; it is thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
