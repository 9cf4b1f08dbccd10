//! Checks on what C hands us: pointers, sizes, strings and versioned structs. Every failure
//! names the argument at fault, as the caller wrote it in C.

use std::ffi::{c_char, CStr};

use fqgan_core::DeviceChoice;

use crate::status::{Failure, Outcome, Status};

/// A non-null, aligned pointer to one `T`, as a reference.
///
/// # Safety
/// When non-null and aligned, `ptr` must point to a valid `T` that outlives `'a`.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Outcome<&'a T> {
    check_pointer(ptr, name)?;
    Ok(&*ptr)
}

/// `len` values at `ptr`, which must be non-null and aligned (even when `len` is 0, to catch
/// a forgotten buffer early).
///
/// # Safety
/// When non-null and aligned, `ptr` must point to `len` valid values that outlive `'a`.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> Outcome<&'a [T]> {
    check_pointer(ptr, name)?;
    check_extent(ptr, len, name)?;
    Ok(std::slice::from_raw_parts(ptr, len))
}

/// Errors unless `len` values from `ptr` fit in a Rust slice: at most `isize::MAX` bytes, not
/// wrapping past the end of the address space (a size the caller got wrong, not memory it has).
fn check_extent<T>(ptr: *const T, len: usize, name: &str) -> Outcome {
    let bytes = len.checked_mul(std::mem::size_of::<T>()).filter(|&b| b <= isize::MAX as usize);
    match bytes.and_then(|b| (ptr as usize).checked_add(b)) {
        Some(_) => Ok(()),
        None => Err(Failure::invalid(format!(
            "`{name}` ({ptr:p}) with {len} values of {} bytes runs past the address space",
            std::mem::size_of::<T>()
        ))),
    }
}

fn check_pointer<T>(ptr: *const T, name: &str) -> Outcome {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("`{name}` is null")));
    }
    if !ptr.is_aligned() {
        return Err(Failure::invalid(format!(
            "`{name}` ({ptr:p}) is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    Ok(())
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// When non-null, `ptr` must point to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, name: &str) -> Outcome<&'a str> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("`{name}` is null")));
    }
    CStr::from_ptr(ptr).to_str().map_err(|e| Failure::invalid(format!("`{name}` is not valid UTF-8: {e}")))
}

/// A caller-owned output buffer of `capacity` elements, together with the "required size"
/// protocol shared by every call that fills one:
/// - `required` (may be null) always receives the number of elements the call writes;
/// - `buffer == NULL && capacity == 0` only asks for that number: returns `Ok(None)`;
/// - a smaller `capacity` fails with `FQGAN_STATUS_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `required`, when non-null and aligned, must be writable; `buffer`, when non-null and
/// aligned, must be valid for `capacity` writes while `'a` lasts.
pub(crate) unsafe fn output<'a, T>(
    buffer: *mut T,
    capacity: usize,
    needed: usize,
    required: *mut usize,
    names: [&str; 3],
) -> Outcome<Option<&'a mut [T]>> {
    let [buffer_name, capacity_name, required_name] = names;
    if !required.is_null() {
        check_pointer(required, required_name)?;
        required.write(needed);
    }
    if buffer.is_null() && capacity == 0 {
        return Ok(None);
    }
    check_pointer(buffer, buffer_name)?;
    check_extent(buffer.cast_const(), needed, buffer_name)?;
    if capacity < needed {
        return Err(Failure::new(
            Status::BufferTooSmall,
            format!("`{capacity_name}` is {capacity}; this call writes {needed} values"),
        ));
    }
    Ok(Some(std::slice::from_raw_parts_mut(buffer, needed)))
}

/// The leading `size_t struct_size` of a versioned struct the caller filled in, checked to
/// cover every field this version of the library uses. Reads nothing else, so the caller may
/// leave an output struct's other fields uninitialised.
///
/// # Safety
/// When non-null and aligned, `ptr` must point to at least a readable `size_t`.
unsafe fn check_struct_size<T>(ptr: *const T, name: &str, init: &str) -> Outcome {
    check_pointer(ptr, name)?;
    let struct_size = ptr.cast::<usize>().read();
    let known = std::mem::size_of::<T>();
    if struct_size < known {
        return Err(Failure::invalid(format!(
            "`{name}->struct_size` is {struct_size}; this library needs at least {known} ({init})"
        )));
    }
    Ok(())
}

/// A versioned input struct (see [`check_struct_size`]).
///
/// # Safety
/// When non-null and aligned, `ptr` must point to at least `struct_size` readable bytes.
pub(crate) unsafe fn versioned<'a, T>(ptr: *const T, name: &str, init: &str) -> Outcome<&'a T> {
    check_struct_size(ptr, name, init)?;
    Ok(&*ptr)
}

/// A versioned input struct copied out, for structs that grow by appending fields:
/// `struct_size` must be the size of one of its released versions (`known_sizes`, the last being
/// this version's `size_of::<T>()`); the fields past an older, smaller version keep their values
/// from `defaults`. Any other size (garbage, or a newer header than this library) is refused
/// rather than half-read.
///
/// # Safety
/// When non-null and aligned, `ptr` must point to at least `struct_size` readable bytes.
pub(crate) unsafe fn versioned_copy<T: Copy>(
    ptr: *const T,
    name: &str,
    known_sizes: &[usize],
    defaults: T,
    init: &str,
) -> Outcome<T> {
    debug_assert_eq!(known_sizes.last(), Some(&std::mem::size_of::<T>()));
    check_pointer(ptr, name)?;
    let struct_size = ptr.cast::<usize>().read();
    if !known_sizes.contains(&struct_size) {
        return Err(Failure::invalid(format!(
            "`{name}->struct_size` is {struct_size}; this library knows the sizes {known_sizes:?} ({init})"
        )));
    }
    let mut value = defaults;
    std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&raw mut value).cast::<u8>(), struct_size);
    Ok(value)
}

/// The device named by a params struct's `device` string; NULL means the CPU.
///
/// # Safety
/// When non-null, `ptr` must point to a NUL-terminated string.
pub(crate) unsafe fn device(ptr: *const c_char, name: &str) -> Outcome<DeviceChoice> {
    if ptr.is_null() {
        return Ok(DeviceChoice::Cpu);
    }
    string(ptr, name)?.parse().map_err(|e: fqgan_core::Error| Failure::invalid(format!("`{name}`: {e}")))
}

/// Writes a versioned output struct whose `struct_size` the caller set: fails when it is
/// smaller than this library's struct, and leaves any bytes past ours (fields of a newer
/// header) untouched. `value.struct_size` tells the caller how many bytes were filled.
///
/// # Safety
/// When non-null and aligned, `ptr` must point to at least `struct_size` writable bytes.
pub(crate) unsafe fn write_versioned<T>(ptr: *mut T, value: T, name: &str, init: &str) -> Outcome {
    check_struct_size(ptr.cast_const(), name, init)?;
    ptr.write(value);
    Ok(())
}

/// An out-parameter for a handle: set to NULL first, so that a failed call never leaves a
/// stale or uninitialised handle behind.
///
/// # Safety
/// When non-null and aligned, `out` must be writable.
pub(crate) unsafe fn handle_out<'a, T>(out: *mut *mut T, name: &str) -> Outcome<&'a mut *mut T> {
    check_pointer(out, name)?;
    out.write(std::ptr::null_mut());
    Ok(&mut *out)
}

#[cfg(test)]
mod tests {
    use super::{output, slice};

    /// Sizes that pass a size_t check but would make a slice past isize::MAX bytes (or past the
    /// end of the address space) are refused instead of becoming undefined behaviour.
    #[test]
    fn extents_past_the_address_space_are_refused() {
        let ptr = std::ptr::NonNull::<u32>::dangling().as_ptr();
        for len in [usize::MAX / 4 + 1, usize::MAX / 2, usize::MAX] {
            let err = unsafe { slice(ptr.cast_const(), len, "pixels") }.unwrap_err();
            assert!(err.message.contains("`pixels`") && err.message.contains("address space"), "{}", err.message);
            let err = unsafe { output(ptr, len, len, std::ptr::null_mut(), ["out", "cap", "req"]) }.unwrap_err();
            assert!(err.message.contains("`out`"), "{}", err.message);
        }
        assert_eq!(unsafe { slice(ptr.cast_const(), 0, "pixels") }.unwrap().len(), 0);
    }
}
