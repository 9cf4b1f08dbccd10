//! The Llama transformer block shared by the FAR backbone (`layers`) and the factorized head
//! (`ar_head`): pre-RMSNorm causal attention with 2D RoPE and grouped KV heads, then SwiGLU.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use super::config::FarConfig;
use super::kv_cache::KvCache;
use super::rope::apply_rotary_emb;
use crate::layers::{attention, merge_heads, Linear, RmsNorm};

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Packed `[q (dim); k (kv_heads * head_dim); v (kv_heads * head_dim)]`.
    pub wqkv: Linear<B>,
    pub wo: Linear<B>,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
    n_head: usize,
    n_kv_head: usize,
}

impl<B: Backend> Attention<B> {
    pub fn new(config: &FarConfig, device: &B::Device) -> Self {
        let kv_dim = config.kv_heads() * config.head_dim();
        Self {
            wqkv: Linear::new(config.dim, config.dim + 2 * kv_dim, false, device),
            wo: Linear::new(config.dim, config.dim, false, device),
            attn_dropout: DropoutConfig::new(config.attn_dropout_p).init(),
            resid_dropout: DropoutConfig::new(config.resid_dropout_p).init(),
            n_head: config.n_head,
            n_kv_head: config.kv_heads(),
        }
    }

    /// x `[B, S, dim]` at the positions whose rotary rows are `freqs` `[S, head_dim/2, 2]`.
    /// With a cache, the S new positions follow the cached ones and attend to all of them.
    pub fn forward(&self, x: Tensor<B, 3>, freqs: Tensor<B, 3>, cache: Option<&mut KvCache<B>>) -> Tensor<B, 3> {
        let [b, s, dim] = x.dims();
        let head_dim = dim / self.n_head;
        let kv_dim = self.n_kv_head * head_dim;
        let qkv = self.wqkv.forward(x);
        let q = qkv.clone().narrow(2, 0, dim).reshape([b, s, self.n_head, head_dim]);
        let k = qkv.clone().narrow(2, dim, kv_dim).reshape([b, s, self.n_kv_head, head_dim]);
        let v = qkv.narrow(2, dim + kv_dim, kv_dim).reshape([b, s, self.n_kv_head, head_dim]);
        let q = apply_rotary_emb(q, freqs.clone()).swap_dims(1, 2);
        let k = apply_rotary_emb(k, freqs).swap_dims(1, 2);
        let v = v.swap_dims(1, 2);
        let (k, v) = match cache {
            Some(cache) => cache.update(k, v),
            None => (k, v),
        };
        let (k, v) = (self.repeat_kv(k), self.repeat_kv(v));
        let total = k.dims()[2];
        let mask = (s > 1).then(|| causal_mask::<B>(s, total, &q.device()));
        let out = attention(q, k, v, mask, |w| self.attn_dropout.forward(w));
        self.resid_dropout.forward(self.wo.forward(merge_heads(out)))
    }

    /// `[B, kv_heads, L, hd]` -> `[B, n_head, L, hd]`; query head h reads kv head h / group,
    /// like `repeat_interleave` in the official code.
    fn repeat_kv(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let group = self.n_head / self.n_kv_head;
        if group == 1 {
            return x;
        }
        let [b, h, l, d] = x.dims();
        x.unsqueeze_dim::<5>(2).expand([b, h, group, l, d]).reshape([b, h * group, l, d])
    }
}

/// `[1, 1, s, total]`, true where query i (at position total - s + i) must not see key j.
fn causal_mask<B: Backend>(s: usize, total: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
    let offset = total - s;
    let mask: Vec<bool> = (0..s).flat_map(|i| (0..total).map(move |j| j > offset + i)).collect();
    Tensor::from_data(TensorData::new(mask, [1, 1, s, total]), device)
}

/// SwiGLU: `w2(silu(w1 x) * w3 x)`.
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub w1: Linear<B>,
    pub w2: Linear<B>,
    pub w3: Linear<B>,
    ffn_dropout: Dropout,
}

impl<B: Backend> FeedForward<B> {
    pub fn new(config: &FarConfig, device: &B::Device) -> Self {
        let hidden = config.ffn_hidden_dim();
        Self {
            w1: Linear::new(config.dim, hidden, false, device),
            w2: Linear::new(hidden, config.dim, false, device),
            w3: Linear::new(config.dim, hidden, false, device),
            ffn_dropout: DropoutConfig::new(config.ffn_dropout_p).init(),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gated = silu(self.w1.forward(x.clone())) * self.w3.forward(x);
        self.ffn_dropout.forward(self.w2.forward(gated))
    }
}

#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    pub attention: Attention<B>,
    pub feed_forward: FeedForward<B>,
    pub attention_norm: RmsNorm<B>,
    pub ffn_norm: RmsNorm<B>,
}

impl<B: Backend> TransformerBlock<B> {
    pub fn new(config: &FarConfig, device: &B::Device) -> Self {
        Self {
            attention: Attention::new(config, device),
            feed_forward: FeedForward::new(config, device),
            attention_norm: RmsNorm::new(config.dim, config.norm_eps, device),
            ffn_norm: RmsNorm::new(config.dim, config.norm_eps, device),
        }
    }

    /// The block's matrix weights: attention's then the feed-forward's.
    pub fn linears_mut(&mut self) -> [&mut Linear<B>; 5] {
        let (attention, ff) = (&mut self.attention, &mut self.feed_forward);
        [&mut attention.wqkv, &mut attention.wo, &mut ff.w1, &mut ff.w2, &mut ff.w3]
    }

    pub fn forward(&self, x: Tensor<B, 3>, freqs: Tensor<B, 3>, cache: Option<&mut KvCache<B>>) -> Tensor<B, 3> {
        let h = x.clone() + self.attention.forward(self.attention_norm.forward(x), freqs, cache);
        h.clone() + self.feed_forward.forward(self.ffn_norm.forward(h))
    }
}
