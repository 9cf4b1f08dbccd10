//! The CNN building blocks shared by encoder and decoder (VQGAN / LlamaGen style).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::TokenizerConfig;
use crate::flex_kernels;
use crate::layers::{residual, unmasked_attention, Conv2d, GroupNorm};

pub(crate) fn normalize<B: Backend>(config: &TokenizerConfig, channels: usize, device: &B::Device) -> GroupNorm<B> {
    GroupNorm::new(config.norm_groups, channels, config.norm_eps, device)
}

/// norm1, swish, conv1, norm2, swish, (dropout), conv2, plus a 1x1 `nin_shortcut` when the
/// channel count changes.
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    pub norm1: GroupNorm<B>,
    pub conv1: Conv2d<B>,
    pub norm2: GroupNorm<B>,
    pub conv2: Conv2d<B>,
    pub nin_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock<B> {
    pub fn new(config: &TokenizerConfig, c_in: usize, c_out: usize, device: &B::Device) -> Self {
        Self {
            norm1: normalize(config, c_in, device),
            conv1: Conv2d::new(c_in, c_out, 3, 1, 1, device),
            norm2: normalize(config, c_out, device),
            conv2: Conv2d::new(c_out, c_out, 3, 1, 1, device),
            nin_shortcut: (c_in != c_out).then(|| Conv2d::new(c_in, c_out, 1, 1, 0, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv1.forward(self.norm1.forward_swish(x.clone()));
        let h = self.conv2.forward(self.norm2.forward_swish(h));
        let shortcut = match &self.nin_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        residual(shortcut, h)
    }
}

/// Single-head self-attention over all positions with 1x1 q/k/v/proj_out convs, scale C^-1/2.
#[derive(Module, Debug)]
pub struct AttnBlock<B: Backend> {
    pub norm: GroupNorm<B>,
    pub q: Conv2d<B>,
    pub k: Conv2d<B>,
    pub v: Conv2d<B>,
    pub proj_out: Conv2d<B>,
}

impl<B: Backend> AttnBlock<B> {
    pub fn new(config: &TokenizerConfig, channels: usize, device: &B::Device) -> Self {
        let conv = || Conv2d::new(channels, channels, 1, 1, 0, device);
        Self { norm: normalize(config, channels, device), q: conv(), k: conv(), v: conv(), proj_out: conv() }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let normed = self.norm.forward(x.clone());
        // One head over the h * w positions, channels as features: [b, 1, hw, c].
        let tokens = |t: Tensor<B, 4>| t.reshape([b, 1, c, h * w]).swap_dims(2, 3);
        let (q, k, v) = (
            tokens(self.q.forward(normed.clone())),
            tokens(self.k.forward(normed.clone())),
            tokens(self.v.forward(normed)),
        );
        let attended = unmasked_attention(q, k, v).swap_dims(2, 3).reshape([b, c, h, w]);
        residual(x, self.proj_out.forward(attended))
    }
}

/// Zero-pad right and bottom by one, then a 3x3 stride-2 conv.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Downsample<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self { conv: Conv2d::new(channels, channels, 3, 2, 0, device) }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv.forward_padded(x, [0, 1])
    }
}

/// Nearest-neighbour 2x upsampling, then a 3x3 conv.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Upsample<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self { conv: Conv2d::new(channels, channels, 3, 1, 1, device) }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        // Repeat each pixel into a 2x2 block: exactly torch's nearest mode at scale 2.
        let doubled = flex_kernels::upsample_nearest2x(x).unwrap_or_else(|x| {
            let [b, c, h, w] = x.dims();
            x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
        });
        self.conv.forward(doubled)
    }
}
