//! Optional recording of named intermediate activations, for parity checks against the
//! official code's forward hooks (`act_*` tensors in the golden cases).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

pub struct Trace<B: Backend> {
    records: Option<Vec<(String, Tensor<B, 4>)>>,
}

impl<B: Backend> Trace<B> {
    /// Records nothing; the normal inference path.
    pub fn off() -> Self {
        Self { records: None }
    }

    pub fn on() -> Self {
        Self { records: Some(Vec::new()) }
    }

    pub fn record(&mut self, name: impl FnOnce() -> String, tensor: &Tensor<B, 4>) {
        if let Some(records) = &mut self.records {
            records.push((name(), tensor.clone()));
        }
    }

    pub fn into_records(self) -> Vec<(String, Tensor<B, 4>)> {
        self.records.unwrap_or_default()
    }
}
