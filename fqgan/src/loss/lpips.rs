//! LPIPS perceptual distance on VGG16 features (official `tokenizer/models/lpips.py`), with
//! torchvision's key names (`net.slice{k}.{index}`, `lin{k}.model.1`, `scaling_layer.*`).

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::max_pool2d;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layers::Conv2d;
use crate::weights::{load_module, KeyMap, LoadRules, TensorFile};

/// The VGG trunk as torchvision's `cfg` list: channel counts, with `None` for a 2x2 max-pool.
/// LPIPS reads the features before each pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LpipsConfig {
    pub vgg_cfg: Vec<Option<usize>>,
}

impl LpipsConfig {
    /// torchvision's VGG16, as the released LPIPS weights use.
    pub fn vgg16() -> Self {
        let m = None;
        let c = Some;
        Self {
            vgg_cfg: vec![
                c(64),
                c(64),
                m,
                c(128),
                c(128),
                m,
                c(256),
                c(256),
                c(256),
                m,
                c(512),
                c(512),
                c(512),
                m,
                c(512),
                c(512),
                c(512),
                m,
            ],
        }
    }

    /// Conv layers per block (a block ends at a pool) with their channel counts.
    fn blocks(&self) -> Vec<Vec<usize>> {
        self.vgg_cfg
            .split(|entry| entry.is_none())
            .filter(|b| !b.is_empty())
            .map(|b| b.iter().flatten().copied().collect())
            .collect()
    }
}

#[derive(Module, Debug)]
pub struct Lpips<B: Backend> {
    /// [1, 3, 1, 1] each.
    pub shift: Param<Tensor<B, 4>>,
    pub scale: Param<Tensor<B, 4>>,
    /// One list of 3x3 convs per VGG block (each followed by ReLU; blocks joined by max-pools).
    pub blocks: Vec<Vec<Conv2d<B>>>,
    /// 1x1 convs without bias, one per block: channel weights of the squared feature differences.
    pub lins: Vec<Conv2d<B>>,
    #[module(skip)]
    config: LpipsConfig,
}

impl<B: Backend> Lpips<B> {
    pub fn new(config: &LpipsConfig, device: &B::Device) -> Self {
        let mut c_in = 3;
        let blocks: Vec<Vec<Conv2d<B>>> = config
            .blocks()
            .iter()
            .map(|block| {
                block
                    .iter()
                    .map(|&c_out| {
                        let conv = Conv2d::new(c_in, c_out, 3, 1, 1, device);
                        c_in = c_out;
                        conv
                    })
                    .collect()
            })
            .collect();
        let lins = config
            .blocks()
            .iter()
            .map(|b| Conv2d::new(*b.last().unwrap(), 1, 1, 1, 0, device).without_bias())
            .collect();
        Self {
            shift: Param::from_tensor(
                Tensor::<B, 1>::from_floats([-0.030, -0.088, -0.188], device).reshape([1, 3, 1, 1]),
            ),
            scale: Param::from_tensor(Tensor::<B, 1>::from_floats([0.458, 0.448, 0.450], device).reshape([1, 3, 1, 1])),
            blocks,
            lins,
            config: config.clone(),
        }
        .no_grad()
    }

    /// Loads torchvision / official LPIPS weights (frozen: no parameter gradients).
    pub fn load(path: impl AsRef<Path>, config: &LpipsConfig, device: &B::Device) -> Result<Self> {
        let file = TensorFile::read(path)?;
        let rules = LoadRules { optional: &|_| false, ignorable: &|_| false };
        Ok(load_module(Self::new(config, device), &file, &lpips_key_map(config), &rules)?.no_grad())
    }

    /// The VGG features of `x` (already scaled) at the end of each block.
    pub fn features(&self, x: Tensor<B, 4>) -> Vec<Tensor<B, 4>> {
        let mut h = x;
        let mut out = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            if i > 0 {
                h = max_pool2d(h, [2, 2], [2, 2], [0, 0], [1, 1], false);
            }
            for conv in block {
                h = relu(conv.forward(h));
            }
            out.push(h.clone());
        }
        out
    }

    pub fn scale_input(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        (x - self.shift.val()) / self.scale.val()
    }

    /// Per-image distance between `x0` and `x1` (both in [-1, 1]): [B, 1, 1, 1].
    pub fn forward(&self, x0: Tensor<B, 4>, x1: Tensor<B, 4>) -> Tensor<B, 4> {
        self.lin_maps(x0, x1)
            .into_iter()
            .map(|map| map.mean_dim(2).mean_dim(3))
            .reduce(|a, b| a + b)
            .expect("at least one VGG block")
    }

    /// Each block's lin output on the squared difference of unit-normalised features,
    /// [B, 1, h, w]; LPIPS is the sum of their spatial means.
    pub fn lin_maps(&self, x0: Tensor<B, 4>, x1: Tensor<B, 4>) -> Vec<Tensor<B, 4>> {
        let f0 = self.features(self.scale_input(x0));
        let f1 = self.features(self.scale_input(x1));
        f0.into_iter()
            .zip(f1)
            .zip(&self.lins)
            .map(|((a, b), lin)| lin.forward((unit_channels(a) - unit_channels(b)).powi_scalar(2)))
            .collect()
    }

    pub fn config(&self) -> &LpipsConfig {
        &self.config
    }
}

/// x / (|x|_channels + 1e-10), the eps outside the square root as upstream.
fn unit_channels<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / (norm + 1e-10)
}

/// Module paths -> torchvision `features` indices, grouped into LPIPS slices.
pub fn lpips_key_map(config: &LpipsConfig) -> KeyMap {
    let mut renames = vec![
        ("shift".to_string(), "scaling_layer.shift".to_string()),
        ("scale".to_string(), "scaling_layer.scale".to_string()),
    ];
    let mut index = 0; // position in torchvision's `features` Sequential
    let mut block = 0;
    let mut conv = 0;
    for entry in &config.vgg_cfg {
        match entry {
            Some(_) => {
                renames.push((format!("blocks.{block}.{conv}."), format!("net.slice{}.{index}.", block + 1)));
                conv += 1;
                index += 2; // conv, relu
            }
            None => {
                renames.push((format!("lins.{block}."), format!("lin{block}.model.1.")));
                block += 1;
                conv = 0;
                index += 1;
            }
        }
    }
    KeyMap::new(renames)
}
