//! `FeatPredHead`: predicts a frozen teacher's CLS feature from one sub-codebook's quantized
//! map (training only; the semantic losses read the class token, index 0).

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::adapter::{run_transformer, ResidualAttentionBlock};
use crate::config::FeatPredConfig;
use crate::layers::{normal_param, LayerNorm, Linear};

#[derive(Module, Debug)]
pub struct FeatPredHead<B: Backend> {
    /// `upscale.0`: codebook dim -> width.
    pub upscale_in: Linear<B>,
    /// `upscale.2`: width -> width (after a ReLU).
    pub upscale_out: Linear<B>,
    pub class_embedding: Param<Tensor<B, 2>>,
    pub positional_embedding: Param<Tensor<B, 2>>,
    pub ln_pre: LayerNorm<B>,
    pub transformer: Vec<ResidualAttentionBlock<B>>,
    pub ln_post: LayerNorm<B>,
}

impl<B: Backend> FeatPredHead<B> {
    pub fn new(config: &FeatPredConfig, input_dim: usize, grid: usize, device: &B::Device) -> Self {
        let width = config.width;
        let scale = (width as f64).powf(-0.5);
        Self {
            upscale_in: Linear::new(input_dim, width, true, device),
            upscale_out: Linear::new(width, width, true, device),
            class_embedding: normal_param([1, width], scale, device),
            positional_embedding: normal_param([grid * grid + 1, width], scale, device),
            ln_pre: LayerNorm::new(width, 1e-5, device),
            transformer: (0..config.layers)
                .map(|_| ResidualAttentionBlock::new(width, config.heads, config.mlp_ratio, 1e-5, device))
                .collect(),
            ln_post: LayerNorm::new(width, 1e-5, device),
        }
    }

    /// quant [B, dim, g, g] -> [B, 1 + g*g, width]; token 0 is the class token.
    pub fn forward(&self, quant: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, c, h, w] = quant.dims();
        let tokens = quant.reshape([b, c, h * w]).swap_dims(1, 2);
        let tokens = self.upscale_out.forward(relu(self.upscale_in.forward(tokens)));
        let width = tokens.dims()[2];
        let class = self.class_embedding.val().unsqueeze::<3>().expand([b, 1, width]);
        let tokens = Tensor::cat(vec![class, tokens], 1) + self.positional_embedding.val().unsqueeze();
        run_transformer(&self.ln_pre, &self.transformer, &self.ln_post, tokens)
    }
}
