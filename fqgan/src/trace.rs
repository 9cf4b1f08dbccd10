//! Named intermediate activations, recorded for parity checks against the official code's
//! forward hooks (the `act_*` tensors of the golden cases).
//!
//! Model code marks a tensor with [`record`]; nothing is kept (and nothing leaves the device)
//! unless a [`capture`] is running on the same thread, so forwards need no tracing parameter.

use std::cell::RefCell;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

thread_local! {
    static RECORDS: RefCell<Option<Vec<(String, TensorData)>>> = const { RefCell::new(None) };
}

/// Keeps `tensor` under `name` when a [`capture`] runs on this thread.
pub(crate) fn record<B: Backend, const D: usize>(name: impl FnOnce() -> String, tensor: &Tensor<B, D>) {
    RECORDS.with(|records| {
        if let Some(records) = records.borrow_mut().as_mut() {
            records.push((name(), tensor.to_data()));
        }
    });
}

/// Runs `forward` with recording on, returning its result and the records in order.
#[cfg_attr(not(feature = "golden"), allow(dead_code))]
pub(crate) fn capture<R>(forward: impl FnOnce() -> R) -> (R, Vec<(String, TensorData)>) {
    let outer = RECORDS.with(|records| records.replace(Some(Vec::new())));
    let result = forward();
    let records = RECORDS.with(|records| records.replace(outer)).unwrap_or_default();
    (result, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;

    #[test]
    fn only_a_capture_keeps_records() {
        let x = Tensor::<Cpu, 1>::from_floats([1.0, 2.0], &Default::default());
        record(|| unreachable!("no capture runs: the name is never built"), &x);
        let ((), records) = capture(|| record(|| "x".into(), &x));
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].0.as_str(), records[0].1.to_vec::<f32>().unwrap()), ("x", vec![1.0, 2.0]));
        let ((), records) = capture(|| ());
        assert!(records.is_empty());
    }
}
