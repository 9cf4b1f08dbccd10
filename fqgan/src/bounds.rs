//! The size limits every model config must respect, checked before anything is built.
//!
//! A model file carries its config, and a config decides how many modules, buffers and
//! position tables get built before the file's tensors are compared with them: without
//! bounds, a few bytes of JSON could ask for terabytes, wrap a size to zero or divide by zero.
//! Each limit sits well above the largest official model (FQGAN dual/triple-ds8/16, FAR-L);
//! `docs/limits.md` lists them.

use std::ops::RangeInclusive;

use crate::error::{Error, Result};

/// Largest total of parameter elements a config may imply (FAR-L has ~0.8 G).
pub const MAX_PARAMETERS: u128 = 4 << 30;

/// Errors unless `value` lies in `range`; the message names the field.
pub(crate) fn count(field: &str, value: usize, range: RangeInclusive<usize>) -> Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(Error::Config(format!("`{field}` is {value}; it must be in {}..={}", range.start(), range.end())))
    }
}

/// Errors unless `value` is finite and lies in `range`; the message names the field.
pub(crate) fn real(field: &str, value: f64, range: RangeInclusive<f64>) -> Result<()> {
    if value.is_finite() && range.contains(&value) {
        Ok(())
    } else {
        Err(Error::Config(format!("`{field}` is {value}; it must be a number in {}..={}", range.start(), range.end())))
    }
}

/// Errors unless the parameter elements a config implies (summed in u128, so nothing
/// wraps) stay under [`MAX_PARAMETERS`].
pub(crate) fn parameters(model: &str, elements: u128) -> Result<()> {
    if elements <= MAX_PARAMETERS {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "the {model} config implies {elements} parameters, more than the limit of {MAX_PARAMETERS}"
        )))
    }
}

/// The product of `factors` in u128 (saturating): sizes multiplied for a bound check cannot wrap.
pub(crate) fn mul(factors: &[usize]) -> u128 {
    factors.iter().fold(1u128, |p, &f| p.saturating_mul(f as u128))
}
