//! Tokenizer configuration: plain data that describes any model of the FQGAN family.
//!
//! The presets `dual-ds16`, `triple-ds16`, `dual-ds8` and `triple-ds8` equal the released
//! checkpoints; the `small-*` presets are for CPU work.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One sub-codebook: its own adapter branch, quantizer and (optionally) feature-prediction head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodebookConfig {
    /// Official attribute suffix: `vis`, `sem` (Dual) or `vis`, `sem_mid`, `sem_high` (Triple).
    /// It fixes the parameter names (`quantize_<name>`, `encoder.conv_out_<name>`, ...).
    pub name: String,
    pub size: usize,
    pub dim: usize,
    #[serde(default = "yes")]
    pub l2_norm: bool,
    /// Training-only head that predicts a teacher's CLS feature from this sub-codebook.
    #[serde(default)]
    pub feat_pred: Option<FeatPredConfig>,
}

/// `FeatPredHead`: Linear-ReLU-Linear up to `width`, then a class token and a small transformer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatPredConfig {
    /// Parameter prefix in official checkpoints: `feat_pred_head`, `mid_sem_feat_pred`, ...
    pub module: String,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    #[serde(default = "mlp_ratio")]
    pub mlp_ratio: f64,
}

/// `FactorizedAdapter`: the per-sub-codebook transformer over the latent grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Must equal `ch * ch_mult.last()`, since the adapter runs on the trunk features.
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    #[serde(default = "mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "ln_eps")]
    pub ln_eps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizerConfig {
    /// Side of the square images the adapters' position tables were built for.
    pub image_size: usize,
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    pub ch: usize,
    /// One entry per resolution level; `len - 1` downsamplings by 2 (so 4 -> 8x, 5 -> 16x).
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub z_channels: usize,
    #[serde(default = "norm_groups")]
    pub norm_groups: usize,
    #[serde(default = "norm_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub dropout: f64,
    pub adapter: AdapterConfig,
    /// The k sub-codebooks, in the official concatenation order (visual first).
    pub codebooks: Vec<CodebookConfig>,
    #[serde(default = "commit_beta")]
    pub commit_beta: f64,
    #[serde(default = "entropy_loss_ratio")]
    pub entropy_loss_ratio: f64,
    #[serde(default = "entropy_temperature")]
    pub entropy_temperature: f64,
    /// Weight of the disentanglement loss (mean squared cosine between sub-codebooks).
    #[serde(default = "disentangle_ratio")]
    pub disentangle_ratio: f64,
    /// Length of the `codebook_used` sliding window (65536 in the official code).
    #[serde(default = "usage_window")]
    pub usage_window: usize,
}

/// The hidden width of a transformer MLP, as the official `int(width * mlp_ratio)`.
pub(crate) fn mlp_width(width: usize, mlp_ratio: f64) -> usize {
    (width as f64 * mlp_ratio) as usize
}

fn yes() -> bool {
    true
}
fn three() -> usize {
    3
}
fn mlp_ratio() -> f64 {
    4.0
}
fn ln_eps() -> f64 {
    1e-5
}
fn norm_groups() -> usize {
    32
}
fn norm_eps() -> f64 {
    1e-6
}
fn commit_beta() -> f64 {
    0.25
}
fn entropy_loss_ratio() -> f64 {
    0.03
}
fn entropy_temperature() -> f64 {
    0.01
}
fn disentangle_ratio() -> f64 {
    0.1
}
fn usage_window() -> usize {
    65536
}

/// Names of the presets accepted by [`TokenizerConfig::preset`].
pub const TOKENIZER_PRESETS: &[&str] =
    &["dual-ds16", "triple-ds16", "dual-ds8", "triple-ds8", "small-dual-ds8", "small-triple-ds8", "small-dual-ds16"];

impl TokenizerConfig {
    /// A released checkpoint's configuration, or a small one for CPU work.
    pub fn preset(name: &str) -> Result<Self> {
        let official = |ch_mult: Vec<usize>, triple: bool| Self {
            image_size: 256,
            ch: 128,
            ch_mult,
            z_channels: 256,
            adapter: AdapterConfig { width: 512, layers: 6, heads: 8, mlp_ratio: 4.0, ln_eps: 1e-5 },
            codebooks: official_codebooks(triple, 16384, [1024, 384, 768], 3, 8),
            ..Self::base()
        };
        let small = |ch_mult: Vec<usize>, triple: bool| Self {
            image_size: 64,
            ch: 32,
            ch_mult,
            z_channels: 32,
            adapter: AdapterConfig { width: 64, layers: 2, heads: 4, mlp_ratio: 4.0, ln_eps: 1e-5 },
            codebooks: official_codebooks(triple, 1024, [64, 48, 64], 1, 4),
            ..Self::base()
        };
        let config = match name {
            "dual-ds16" => official(vec![1, 1, 2, 2, 4], false),
            "triple-ds16" => official(vec![1, 1, 2, 2, 4], true),
            "dual-ds8" => official(vec![1, 2, 2, 4], false),
            "triple-ds8" => official(vec![1, 2, 2, 4], true),
            "small-dual-ds8" => small(vec![1, 1, 2, 2], false),
            "small-triple-ds8" => small(vec![1, 1, 2, 2], true),
            "small-dual-ds16" => small(vec![1, 1, 1, 2, 2], false),
            _ => {
                return Err(Error::Config(format!(
                    "unknown tokenizer preset '{name}' (known: {})",
                    TOKENIZER_PRESETS.join(", ")
                )))
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Defaults shared by every preset; the caller fills in the sizes.
    fn base() -> Self {
        Self {
            image_size: 0,
            in_channels: 3,
            out_channels: 3,
            ch: 0,
            ch_mult: Vec::new(),
            num_res_blocks: 2,
            z_channels: 0,
            norm_groups: norm_groups(),
            norm_eps: norm_eps(),
            dropout: 0.0,
            adapter: AdapterConfig { width: 0, layers: 0, heads: 1, mlp_ratio: 4.0, ln_eps: 1e-5 },
            codebooks: Vec::new(),
            commit_beta: commit_beta(),
            entropy_loss_ratio: entropy_loss_ratio(),
            entropy_temperature: entropy_temperature(),
            disentangle_ratio: disentangle_ratio(),
            usage_window: usage_window(),
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("tokenizer config JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Number of sub-codebooks, k.
    pub fn k(&self) -> usize {
        self.codebooks.len()
    }

    pub fn downsample(&self) -> usize {
        1 << (self.ch_mult.len() - 1)
    }

    /// Side of the latent token grid for `image_size` images.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.downsample()
    }

    /// Bits per pixel of the token grids stored plainly: every sub-codebook index in
    /// ceil(log2 size) bits, one index per sub-codebook per `downsample` x `downsample` pixels.
    pub fn bits_per_pixel(&self) -> f64 {
        let bits_per_cell: f64 = self.codebooks.iter().map(|c| (c.size as f64).log2().ceil()).sum();
        bits_per_cell / (self.downsample() * self.downsample()) as f64
    }

    /// Channels at the lowest resolution, where the adapters run.
    pub fn trunk_channels(&self) -> usize {
        self.ch * self.ch_mult.last().copied().unwrap_or(1)
    }

    /// Sum of the sub-codebook dims: the channels entering `post_quant_conv`.
    pub fn quant_channels(&self) -> usize {
        self.codebooks.iter().map(|c| c.dim).sum()
    }

    /// Every size within the limits of [`crate::bounds`], before any of them is multiplied.
    fn check_bounds(&self) -> Result<()> {
        use crate::bounds::{count, real};
        // Images are RGB on both sides: the image tools read and write three channels.
        count("in_channels", self.in_channels, 3..=3)?;
        count("out_channels", self.out_channels, 3..=3)?;
        count("image_size", self.image_size, 1..=2048)?;
        count("ch", self.ch, 1..=1024)?;
        for &mult in &self.ch_mult {
            count("ch_mult entry", mult, 1..=16)?;
            count("ch * ch_mult entry", self.ch * mult, 1..=4096)?;
        }
        count("num_res_blocks", self.num_res_blocks, 1..=16)?;
        count("z_channels", self.z_channels, 1..=4096)?;
        count("norm_groups", self.norm_groups, 1..=1024)?;
        real("norm_eps", self.norm_eps, 1e-12..=1.0)?;
        real("dropout", self.dropout, 0.0..=0.99)?;
        count("adapter.layers", self.adapter.layers, 0..=64)?;
        count("adapter.heads", self.adapter.heads, 1..=256)?;
        real("adapter.mlp_ratio", self.adapter.mlp_ratio, 0.01..=16.0)?;
        real("adapter.ln_eps", self.adapter.ln_eps, 1e-12..=1.0)?;
        count(
            "adapter MLP width (width x mlp_ratio)",
            mlp_width(self.adapter.width, self.adapter.mlp_ratio),
            1..=1 << 16,
        )?;
        count("codebooks (k)", self.codebooks.len(), 1..=8)?;
        for cb in &self.codebooks {
            count(&format!("codebooks.{}.size", cb.name), cb.size, 2..=1 << 24)?;
            count(&format!("codebooks.{}.dim", cb.name), cb.dim, 1..=1024)?;
            if let Some(fp) = &cb.feat_pred {
                count(&format!("codebooks.{}.feat_pred.width", cb.name), fp.width, 1..=4096)?;
                count(&format!("codebooks.{}.feat_pred.layers", cb.name), fp.layers, 0..=64)?;
                count(&format!("codebooks.{}.feat_pred.heads", cb.name), fp.heads, 1..=256)?;
                real(&format!("codebooks.{}.feat_pred.mlp_ratio", cb.name), fp.mlp_ratio, 0.01..=16.0)?;
                count(
                    &format!("codebooks.{}.feat_pred MLP width (width x mlp_ratio)", cb.name),
                    mlp_width(fp.width, fp.mlp_ratio),
                    1..=1 << 16,
                )?;
            }
        }
        real("commit_beta", self.commit_beta, 0.0..=1e3)?;
        real("entropy_loss_ratio", self.entropy_loss_ratio, 0.0..=1e3)?;
        real("entropy_temperature", self.entropy_temperature, 1e-6..=1e3)?;
        real("disentangle_ratio", self.disentangle_ratio, 0.0..=1e3)?;
        count("usage_window", self.usage_window, 1..=1 << 20)?;
        crate::bounds::parameters("tokenizer", self.parameter_bound())
    }

    /// An upper estimate of the parameter elements this config implies (encoder and decoder
    /// convolutions, adapters with their position tables, codebooks, feature heads).
    fn parameter_bound(&self) -> u128 {
        use crate::bounds::mul;
        let widest = self.ch_mult.iter().map(|m| self.ch * m).max().unwrap_or(self.ch).max(self.z_channels);
        let convs_per_level = 2 * (self.num_res_blocks + 2) * 2;
        let trunk = mul(&[self.ch_mult.len() + 2, convs_per_level, 9, widest, widest]);
        let grid = self.grid_size();
        let transformer =
            |width: usize, layers: usize, ratio: f64| mul(&[layers, 4 * width + 2 * mlp_width(width, ratio), width]);
        let adapters = mul(&[self.k()])
            * (transformer(self.adapter.width, self.adapter.layers, self.adapter.mlp_ratio)
                + mul(&[grid, grid, self.adapter.width]));
        let codebooks: u128 = self
            .codebooks
            .iter()
            .map(|cb| {
                let head = cb.feat_pred.as_ref().map_or(0, |fp| transformer(fp.width, fp.layers + 2, fp.mlp_ratio));
                mul(&[cb.size, cb.dim]) + mul(&[cb.dim + widest, widest]) + head
            })
            .sum();
        trunk + adapters + codebooks
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.codebooks.is_empty() {
            return fail("`codebooks` is empty: a tokenizer needs k >= 1 sub-codebooks".into());
        }
        if !(2..=8).contains(&self.ch_mult.len()) {
            return fail(format!("`ch_mult` has {} levels; expected 2..=8", self.ch_mult.len()));
        }
        self.check_bounds()?;
        for mult in std::iter::once(&1).chain(&self.ch_mult) {
            if (self.ch * mult) % self.norm_groups != 0 {
                return fail(format!(
                    "channel count {} (ch {} x {mult}) is not divisible by norm_groups {}",
                    self.ch * mult,
                    self.ch,
                    self.norm_groups
                ));
            }
        }
        if self.image_size == 0 || self.image_size % self.downsample() != 0 {
            return fail(format!(
                "`image_size` {} is not a positive multiple of the downsample factor {}",
                self.image_size,
                self.downsample()
            ));
        }
        if self.adapter.width != self.trunk_channels() {
            return fail(format!(
                "`adapter.width` {} must equal ch * ch_mult[-1] = {}",
                self.adapter.width,
                self.trunk_channels()
            ));
        }
        if self.adapter.heads == 0 || self.adapter.width % self.adapter.heads != 0 {
            return fail(format!(
                "`adapter.width` {} is not divisible by `adapter.heads` {}",
                self.adapter.width, self.adapter.heads
            ));
        }
        if self.z_channels == 0 || self.num_res_blocks == 0 {
            return fail("`z_channels` and `num_res_blocks` must be positive".into());
        }
        let mut names = std::collections::HashSet::new();
        for cb in &self.codebooks {
            if !names.insert(cb.name.as_str()) {
                return fail(format!("sub-codebook name '{}' appears twice", cb.name));
            }
            if cb.name.is_empty() || !cb.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return fail(format!("sub-codebook name '{}' must be [A-Za-z0-9_]+", cb.name));
            }
            if cb.size < 2 || cb.size > (1 << 24) || cb.dim == 0 {
                return fail(format!(
                    "sub-codebook '{}': size {} must be in 2..=2^24 and dim {} positive",
                    cb.name, cb.size, cb.dim
                ));
            }
            if let Some(fp) = &cb.feat_pred {
                if fp.heads == 0 || fp.width % fp.heads != 0 {
                    return fail(format!(
                        "sub-codebook '{}': feat_pred width {} is not divisible by heads {}",
                        cb.name, fp.width, fp.heads
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads the `config.json` of a golden reference case (official PyTorch naming).
    pub fn from_golden_json(value: &serde_json::Value) -> Result<Self> {
        let field =
            |name: &str| value.get(name).ok_or_else(|| Error::Config(format!("golden config has no field `{name}`")));
        let usize_of = |v: &serde_json::Value, name: &str| -> Result<usize> {
            v.get(name)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| Error::Config(format!("golden config: `{name}` is missing or not an integer")))
        };
        let f64_or =
            |v: &serde_json::Value, name: &str, default: f64| v.get(name).and_then(|x| x.as_f64()).unwrap_or(default);
        let adapter = field("adapter")?;
        let names: Vec<String> = serde_json::from_value(field("sub_codebooks")?.clone())
            .map_err(|e| Error::Config(format!("golden config `sub_codebooks`: {e}")))?;
        let feat_preds = value.get("feat_pred").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        let mut codebooks = Vec::new();
        for name in names {
            let feat_pred = feat_preds
                .iter()
                .find(|fp| fp.get("sub_codebook").and_then(|s| s.as_str()) == Some(name.as_str()))
                .map(|fp| -> Result<FeatPredConfig> {
                    Ok(FeatPredConfig {
                        module: fp.get("module").and_then(|s| s.as_str()).unwrap_or_default().to_string(),
                        width: usize_of(fp, "width")?,
                        layers: usize_of(fp, "layers")?,
                        heads: usize_of(fp, "heads")?,
                        mlp_ratio: f64_or(fp, "mlp_ratio", 4.0),
                    })
                })
                .transpose()?;
            codebooks.push(CodebookConfig {
                name,
                size: usize_of(value, "codebook_size")?,
                dim: usize_of(value, "codebook_embed_dim")?,
                l2_norm: value.get("codebook_l2_norm").and_then(|b| b.as_bool()).unwrap_or(true),
                feat_pred,
            });
        }
        let norm = value.get("norm").cloned().unwrap_or(serde_json::Value::Null);
        let config = Self {
            image_size: usize_of(value, "image_size")?,
            in_channels: usize_of(value, "in_channels").unwrap_or(3),
            out_channels: usize_of(value, "out_channels").unwrap_or(3),
            ch: usize_of(value, "ch")?,
            ch_mult: serde_json::from_value(field("ch_mult")?.clone())
                .map_err(|e| Error::Config(format!("golden config `ch_mult`: {e}")))?,
            num_res_blocks: usize_of(value, "num_res_blocks")?,
            z_channels: usize_of(value, "z_channels")?,
            norm_groups: usize_of(&norm, "num_groups").unwrap_or(32),
            norm_eps: f64_or(&norm, "eps", 1e-6),
            dropout: f64_or(value, "dropout_p", 0.0),
            adapter: AdapterConfig {
                width: usize_of(adapter, "width")?,
                layers: usize_of(adapter, "layers")?,
                heads: usize_of(adapter, "heads")?,
                mlp_ratio: f64_or(adapter, "mlp_ratio", 4.0),
                ln_eps: f64_or(adapter, "ln_eps", 1e-5),
            },
            codebooks,
            commit_beta: f64_or(value, "commit_loss_beta", 0.25),
            entropy_loss_ratio: f64_or(value, "entropy_loss_ratio", 0.0),
            entropy_temperature: f64_or(value, "entropy_temperature", 0.01),
            disentangle_ratio: if value.get("with_disentanglement").and_then(|b| b.as_bool()).unwrap_or(false) {
                f64_or(value, "disentanglement_ratio", 0.0)
            } else {
                0.0
            },
            usage_window: usize_of(value, "codebook_used_len").unwrap_or(65536),
        };
        config.validate()?;
        Ok(config)
    }
}

/// The official sub-codebooks: Dual = vis + sem (CLIP head), Triple = vis + sem_mid (DINO head)
/// + sem_high (CLIP head). `widths` are the teacher widths [dual sem, triple mid, triple high].
fn official_codebooks(
    triple: bool,
    size: usize,
    widths: [usize; 3],
    layers: usize,
    heads: usize,
) -> Vec<CodebookConfig> {
    let codebook = |name: &str, feat: Option<(&str, usize)>| CodebookConfig {
        name: name.into(),
        size,
        dim: 8,
        l2_norm: true,
        feat_pred: feat.map(|(module, width)| FeatPredConfig {
            module: module.into(),
            width,
            layers,
            heads,
            mlp_ratio: 4.0,
        }),
    };
    if triple {
        vec![
            codebook("vis", None),
            codebook("sem_mid", Some(("mid_sem_feat_pred", widths[1]))),
            codebook("sem_high", Some(("high_sem_feat_pred", widths[2]))),
        ]
    } else {
        vec![codebook("vis", None), codebook("sem", Some(("feat_pred_head", widths[0])))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip_through_json() {
        for name in TOKENIZER_PRESETS {
            let config = TokenizerConfig::preset(name).unwrap();
            assert_eq!(TokenizerConfig::from_json(&config.to_json()).unwrap(), config);
        }
        let dual = TokenizerConfig::preset("dual-ds16").unwrap();
        assert_eq!((dual.k(), dual.downsample(), dual.grid_size()), (2, 16, 16));
        let triple = TokenizerConfig::preset("triple-ds8").unwrap();
        assert_eq!((triple.k(), triple.downsample(), triple.grid_size()), (3, 8, 32));
        // 14 bits per 16x16 pixels per sub-codebook; 14 * 3 / 64 for Triple at downsample 8.
        assert_eq!(dual.bits_per_pixel(), 28.0 / 256.0);
        assert_eq!(triple.bits_per_pixel(), 42.0 / 64.0);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let mut config = TokenizerConfig::preset("small-dual-ds8").unwrap();
        config.adapter.width = 48;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("adapter.width"), "{err}");
        let err = TokenizerConfig::preset("quad").unwrap_err().to_string();
        assert!(err.contains("quad") && err.contains("dual-ds16"), "{err}");
    }
}
