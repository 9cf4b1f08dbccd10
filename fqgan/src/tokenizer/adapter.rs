//! The transformer pieces of the tokenizer: `ResidualAttentionBlock` (pre-LN, packed
//! `nn.MultiheadAttention`) and the `FactorizedAdapter` each sub-codebook branch starts with.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use crate::layers::{
    gelu, linear_rows, merge_heads, normal_param, random_param, residual, unmasked_attention, LayerNorm, Linear,
};

/// `nn.MultiheadAttention` (batch-first here) with the packed `in_proj_weight` = [q; k; v].
#[derive(Module, Debug)]
pub struct MultiheadAttention<B: Backend> {
    pub in_proj_weight: Param<Tensor<B, 2>>,
    pub in_proj_bias: Param<Tensor<B, 1>>,
    pub out_proj: Linear<B>,
    heads: usize,
}

impl<B: Backend> MultiheadAttention<B> {
    pub fn new(width: usize, heads: usize, device: &B::Device) -> Self {
        // xavier_uniform on the packed weight, zero bias: PyTorch's own init.
        let bound = (6.0 / (4 * width) as f64).sqrt();
        Self {
            in_proj_weight: random_param([3 * width, width], Distribution::Uniform(-bound, bound), device),
            in_proj_bias: Param::from_tensor(Tensor::zeros([3 * width], device)),
            out_proj: Linear::new(width, width, true, device),
            heads,
        }
    }

    /// x: [batch, seq, width] -> [batch, seq, width]
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, width] = x.dims();
        let qkv = linear_rows(x, self.in_proj_weight.val(), Some(self.in_proj_bias.val()));
        // [b, 3 * heads, n, d]: q's heads, then k's, then v's, as views of the projection
        // (a reshape after narrowing would copy it on the CPU backend).
        let heads = qkv.reshape([b, n, 3 * self.heads, width / self.heads]).swap_dims(1, 2);
        let split = |i: usize| heads.clone().narrow(1, i * self.heads, self.heads);
        let out = unmasked_attention(split(0), split(1), split(2));
        self.out_proj.forward(merge_heads(out))
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub c_proj: Linear<B>,
}

/// Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with exact GELU.
#[derive(Module, Debug)]
pub struct ResidualAttentionBlock<B: Backend> {
    pub ln_1: LayerNorm<B>,
    pub attn: MultiheadAttention<B>,
    pub ln_2: LayerNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> ResidualAttentionBlock<B> {
    pub fn new(width: usize, heads: usize, mlp_ratio: f64, ln_eps: f64, device: &B::Device) -> Self {
        let hidden = crate::config::mlp_width(width, mlp_ratio);
        Self {
            ln_1: LayerNorm::new(width, ln_eps, device),
            attn: MultiheadAttention::new(width, heads, device),
            ln_2: LayerNorm::new(width, ln_eps, device),
            mlp: Mlp {
                c_fc: Linear::new(width, hidden, true, device),
                c_proj: Linear::new(hidden, width, true, device),
            },
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = residual(x.clone(), self.attn.forward(self.ln_1.forward(x)));
        let mlp = self.mlp.c_proj.forward(gelu(self.mlp.c_fc.forward(self.ln_2.forward(x.clone()))));
        residual(x, mlp)
    }
}

/// A pre-LN transformer over a token sequence: ln_pre, blocks, ln_post.
pub(crate) fn run_transformer<B: Backend>(
    ln_pre: &LayerNorm<B>,
    blocks: &[ResidualAttentionBlock<B>],
    ln_post: &LayerNorm<B>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let x = blocks.iter().fold(ln_pre.forward(x), |x, block| block.forward(x));
    ln_post.forward(x)
}

/// Per-sub-codebook transformer over the latent grid, with a learned position table added
/// before `ln_pre`. Maps [B, C, g, g] to [B, C, g, g].
#[derive(Module, Debug)]
pub struct FactorizedAdapter<B: Backend> {
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub ln_pre: LayerNorm<B>,
    pub transformer: Vec<ResidualAttentionBlock<B>>,
    pub ln_post: LayerNorm<B>,
}

impl<B: Backend> FactorizedAdapter<B> {
    pub fn new(config: &crate::config::TokenizerConfig, device: &B::Device) -> Self {
        let a = &config.adapter;
        let grid = config.grid_size();
        Self {
            positional_embedding: normal_param([grid * grid, a.width], (a.width as f64).powf(-0.5), device),
            ln_pre: LayerNorm::new(a.width, a.ln_eps, device),
            transformer: (0..a.layers)
                .map(|_| ResidualAttentionBlock::new(a.width, a.heads, a.mlp_ratio, a.ln_eps, device))
                .collect(),
            ln_post: LayerNorm::new(a.width, a.ln_eps, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        // The positions added in x's own layout, before it is viewed as tokens [b, hw, c]:
        // an add on the view walks it element by element on the CPU backend.
        let positions = self.positional_embedding.val().transpose().unsqueeze::<3>();
        let tokens = (x.reshape([b, c, h * w]) + positions).swap_dims(1, 2);
        let out = run_transformer(&self.ln_pre, &self.transformer, &self.ln_post, tokens);
        out.swap_dims(1, 2).reshape([b, c, h, w])
    }
}
