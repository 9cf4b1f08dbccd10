//! The encoder: a shared CNN trunk, then one branch per sub-codebook
//! (FactorizedAdapter -> GroupNorm -> swish -> conv_out).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::adapter::FactorizedAdapter;
use super::blocks::{normalize, AttnBlock, Downsample, ResnetBlock};
use crate::config::TokenizerConfig;
use crate::layers::{Conv2d, GroupNorm};
use crate::trace;

/// One resolution level: ResnetBlocks (each followed by an AttnBlock at the lowest
/// resolution only), then a Downsample on every level but the last.
#[derive(Module, Debug)]
pub struct EncoderLevel<B: Backend> {
    pub res: Vec<ResnetBlock<B>>,
    pub attn: Vec<AttnBlock<B>>,
    pub downsample: Option<Downsample<B>>,
}

/// The branch of one sub-codebook (official `visual_head`, `norm_out_vis`, `conv_out_vis`, ...).
#[derive(Module, Debug)]
pub struct EncoderHead<B: Backend> {
    pub adapter: FactorizedAdapter<B>,
    pub norm_out: GroupNorm<B>,
    pub conv_out: Conv2d<B>,
}

#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub conv_in: Conv2d<B>,
    pub conv_blocks: Vec<EncoderLevel<B>>,
    /// Res, Attn, Res.
    pub mid: (ResnetBlock<B>, AttnBlock<B>, ResnetBlock<B>),
    pub heads: Vec<EncoderHead<B>>,
}

impl<B: Backend> Encoder<B> {
    pub fn new(config: &TokenizerConfig, device: &B::Device) -> Self {
        let levels = config.ch_mult.len();
        let mut block_in = config.ch;
        let conv_blocks = (0..levels)
            .map(|level| {
                let block_out = config.ch * config.ch_mult[level];
                let last = level == levels - 1;
                let res = (0..config.num_res_blocks)
                    .map(|i| ResnetBlock::new(config, if i == 0 { block_in } else { block_out }, block_out, device))
                    .collect();
                block_in = block_out;
                let attn_count = if last { config.num_res_blocks } else { 0 };
                EncoderLevel {
                    res,
                    attn: (0..attn_count).map(|_| AttnBlock::new(config, block_out, device)).collect(),
                    downsample: (!last).then(|| Downsample::new(block_out, device)),
                }
            })
            .collect();
        let heads = config
            .codebooks
            .iter()
            .map(|_| EncoderHead {
                adapter: FactorizedAdapter::new(config, device),
                norm_out: normalize(config, block_in, device),
                conv_out: Conv2d::new(block_in, config.z_channels, 3, 1, 1, device),
            })
            .collect();
        Self {
            conv_in: Conv2d::new(config.in_channels, config.ch, 3, 1, 1, device),
            conv_blocks,
            mid: (
                ResnetBlock::new(config, block_in, block_in, device),
                AttnBlock::new(config, block_in, device),
                ResnetBlock::new(config, block_in, block_in, device),
            ),
            heads,
        }
    }

    /// images [B, 3, H, W] -> one [B, z_channels, H/ds, W/ds] map per sub-codebook.
    pub fn forward(&self, images: Tensor<B, 4>, names: &[&str]) -> Vec<Tensor<B, 4>> {
        let mut h = self.conv_in.forward(images);
        for (i, level) in self.conv_blocks.iter().enumerate() {
            for (j, res) in level.res.iter().enumerate() {
                h = res.forward(h);
                if let Some(attn) = level.attn.get(j) {
                    h = attn.forward(h);
                }
            }
            if let Some(down) = &level.downsample {
                h = down.forward(h);
            }
            trace::record(|| format!("act_enc_level{i}"), &h);
        }
        let h = self.mid.2.forward(self.mid.1.forward(self.mid.0.forward(h)));
        trace::record(|| "act_enc_mid".into(), &h);
        self.heads
            .iter()
            .zip(names)
            .map(|(head, name)| {
                let adapted = head.adapter.forward(h.clone());
                trace::record(|| format!("act_enc_adapter_{name}"), &adapted);
                let out = head.conv_out.forward(head.norm_out.forward_swish(adapted));
                trace::record(|| format!("act_enc_out_{name}"), &out);
                out
            })
            .collect()
    }
}
