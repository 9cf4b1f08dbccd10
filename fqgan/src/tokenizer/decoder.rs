//! The decoder: the encoder trunk's mirror, from the lowest resolution up, with nearest 2x
//! upsampling.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::blocks::{normalize, AttnBlock, ResnetBlock, Upsample};
use crate::config::TokenizerConfig;
use crate::layers::{Conv2d, GroupNorm};
use crate::trace;

/// num_res_blocks + 1 ResnetBlocks (AttnBlocks only at the lowest level), then an Upsample on
/// every level but the last. `conv_blocks.0` is the lowest resolution.
#[derive(Module, Debug)]
pub struct DecoderLevel<B: Backend> {
    pub res: Vec<ResnetBlock<B>>,
    pub attn: Vec<AttnBlock<B>>,
    pub upsample: Option<Upsample<B>>,
}

#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    pub conv_in: Conv2d<B>,
    /// Res, Attn, Res.
    pub mid: (ResnetBlock<B>, AttnBlock<B>, ResnetBlock<B>),
    pub conv_blocks: Vec<DecoderLevel<B>>,
    pub norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> Decoder<B> {
    pub fn new(config: &TokenizerConfig, device: &B::Device) -> Self {
        let levels = config.ch_mult.len();
        let mut block_in = config.trunk_channels();
        let conv_in = Conv2d::new(config.z_channels, block_in, 3, 1, 1, device);
        let mid = (
            ResnetBlock::new(config, block_in, block_in, device),
            AttnBlock::new(config, block_in, device),
            ResnetBlock::new(config, block_in, block_in, device),
        );
        let conv_blocks = (0..levels)
            .rev()
            .map(|level| {
                let block_out = config.ch * config.ch_mult[level];
                let res = (0..=config.num_res_blocks)
                    .map(|i| ResnetBlock::new(config, if i == 0 { block_in } else { block_out }, block_out, device))
                    .collect();
                block_in = block_out;
                let attn_count = if level == levels - 1 { config.num_res_blocks + 1 } else { 0 };
                DecoderLevel {
                    res,
                    attn: (0..attn_count).map(|_| AttnBlock::new(config, block_out, device)).collect(),
                    upsample: (level != 0).then(|| Upsample::new(block_out, device)),
                }
            })
            .collect();
        Self {
            conv_in,
            mid,
            conv_blocks,
            norm_out: normalize(config, block_in, device),
            conv_out: Conv2d::new(block_in, config.out_channels, 3, 1, 1, device),
        }
    }

    /// z [B, z_channels, h, w] -> images [B, 3, h*ds, w*ds] (unclamped).
    pub fn forward(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv_in.forward(z);
        let mut h = self.mid.2.forward(self.mid.1.forward(self.mid.0.forward(h)));
        trace::record(|| "act_dec_mid".into(), &h);
        for (i, level) in self.conv_blocks.iter().enumerate() {
            for (j, res) in level.res.iter().enumerate() {
                h = res.forward(h);
                if let Some(attn) = level.attn.get(j) {
                    h = attn.forward(h);
                }
            }
            if let Some(up) = &level.upsample {
                h = up.forward(h);
            }
            trace::record(|| format!("act_dec_level{i}"), &h);
        }
        self.conv_out.forward(self.norm_out.forward_swish(h))
    }
}
