//! Key/value caches for incremental decoding, one per attention layer.
//!
//! Buffers are allocated once for the longest sequence and written in place, as in gpt-fast.
//! They hold the `n_kv_head` grouped heads (not `n_head`, as the official KVCache allocates,
//! which breaks generation with grouped-query attention).

use burn::tensor::backend::Backend;
use burn::tensor::{s, Tensor};

use crate::flex_kernels::write_positions;

#[derive(Debug)]
pub struct KvCache<B: Backend> {
    /// `[batch, kv_heads, capacity, head_dim]`; `None` only while being updated.
    keys: Option<Tensor<B, 4>>,
    values: Option<Tensor<B, 4>>,
    len: usize,
    capacity: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(batch: usize, kv_heads: usize, capacity: usize, head_dim: usize, device: &B::Device) -> Self {
        let zeros = || Some(Tensor::zeros([batch, kv_heads, capacity, head_dim], device));
        Self { keys: zeros(), values: zeros(), len: 0, capacity }
    }

    /// Positions filled so far; the next entries go to position `len()`.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `[batch, kv_heads, s, head_dim]` keys and values; returns everything cached,
    /// `[batch, kv_heads, len, head_dim]`.
    ///
    /// Panics when the cache is full: callers size it for the whole sequence.
    pub fn update(&mut self, keys: Tensor<B, 4>, values: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let s = keys.dims()[2];
        let (start, end) = (self.len, self.len + s);
        assert!(end <= self.capacity, "KV cache overflow: {end} positions, capacity {}", self.capacity);
        let write = |buffer: &mut Option<Tensor<B, 4>>, new: Tensor<B, 4>| {
            let current = buffer.take().expect("cache buffer present");
            let updated = match write_positions(current, start, &new) {
                Ok(written) => written,
                Err(current) => current.slice_assign(s![.., .., start..end, ..], new),
            };
            *buffer = Some(updated.clone());
            updated.narrow(2, 0, end)
        };
        let keys = write(&mut self.keys, keys);
        let values = write(&mut self.values, values);
        self.len = end;
        (keys, values)
    }
}
