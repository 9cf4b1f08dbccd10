//! The factorized autoregressive head (paper §3.3): for each position it runs a short causal
//! sequence `[h_n, emb_1(s_1), ..., emb_{k-1}(s_{k-1})]` through `ar_n_layer` blocks, then one
//! shared RMSNorm, and slot j-1 gives the logits of sub-token j through `output_j`.
//!
//! Slot i uses row i of the backbone's rotary table whatever the position: slot 0 gets the
//! all-zero class row and slot 1 the identity, as in the official code.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::block::TransformerBlock;
use super::config::FarConfig;
use super::kv_cache::KvCache;
use crate::layers::{Linear, RmsNorm};
use crate::trace;

#[derive(Module, Debug)]
pub struct FactorizedHead<B: Backend> {
    /// Official `ar_head`.
    pub blocks: Vec<TransformerBlock<B>>,
    pub norm: RmsNorm<B>,
    /// Official `output_1 .. output_k`.
    pub output: Vec<Linear<B>>,
}

impl<B: Backend> FactorizedHead<B> {
    pub fn new(config: &FarConfig, device: &B::Device) -> Self {
        Self {
            blocks: (0..config.ar_n_layer).map(|_| TransformerBlock::new(config, device)).collect(),
            norm: RmsNorm::new(config.dim, config.norm_eps, device),
            output: config.vocab_sizes.iter().map(|&v| Linear::new(config.dim, v, false, device)).collect(),
        }
    }

    /// Teacher forcing over all positions at once. `h` `[B, N, dim]` is the backbone output;
    /// `slot_inputs` are the k-1 embeddings `emb_j(target_j)` `[B, N, dim]`; `freqs` holds
    /// rows `0..k` of the rotary table. Returns k logits `[B, N, vocab_j]`.
    pub fn forward(&self, h: Tensor<B, 3>, slot_inputs: Vec<Tensor<B, 3>>, freqs: Tensor<B, 3>) -> Vec<Tensor<B, 3>> {
        let [b, n, dim] = h.dims();
        let k = slot_inputs.len() + 1;
        let slots: Vec<Tensor<B, 3>> = std::iter::once(h).chain(slot_inputs).collect();
        let mut ctx = Tensor::stack::<4>(slots, 2).reshape([b * n, k, dim]);
        for (i, block) in self.blocks.iter().enumerate() {
            ctx = block.forward(ctx, freqs.clone(), None);
            trace::record(|| format!("act_ar_head{i}_out"), &ctx.clone().unsqueeze::<4>());
        }
        let normed = self.norm.forward(ctx.reshape([b, n, k, dim]));
        trace::record(|| "act_norm_out".into(), &normed);
        self.output
            .iter()
            .enumerate()
            .map(|(j, output)| output.forward(normed.clone().narrow(2, j, 1).reshape([b, n, dim])))
            .collect()
    }

    /// Logits of sub-token `last + 1` from the slots `x` `[B, S, dim]` that end at slot
    /// `last`, with their rotary rows `freqs`. With caches the earlier slots come from them
    /// (S = 1 when decoding); without, `x` must hold slots `0..=last`. Returns `[B, vocab]`.
    pub fn logits(
        &self,
        x: Tensor<B, 3>,
        last: usize,
        freqs: Tensor<B, 3>,
        mut caches: Option<&mut [KvCache<B>]>,
    ) -> Tensor<B, 2> {
        let [b, s, dim] = x.dims();
        let mut out = x;
        for (i, block) in self.blocks.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            out = block.forward(out, freqs.clone(), cache);
        }
        let last_slot = out.narrow(1, s - 1, 1).reshape([b, dim]);
        self.output[last].forward(self.norm.forward(last_slot))
    }

    /// Empty caches for one position's k-slot sequence of `batch` rows.
    pub fn new_caches(&self, config: &FarConfig, batch: usize, device: &B::Device) -> Vec<KvCache<B>> {
        (0..self.blocks.len())
            .map(|_| KvCache::new(batch, config.kv_heads(), config.k(), config.head_dim(), device))
            .collect()
    }
}
