//! FAR generator configuration: plain data for any number k of sub-tokens.
//!
//! The presets `far-b-{dual,triple}` and `far-l-{dual,triple}` equal the official FAR-B /
//! FAR-L models on 256x256 images with a downsample-16 tokenizer; the `small-*` and `tiny-*`
//! presets are for CPU work.

use serde::{Deserialize, Serialize};

use crate::config::TokenizerConfig;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FarConfig {
    pub dim: usize,
    /// Backbone transformer blocks (`layers`).
    pub n_layer: usize,
    /// Factorized AR head blocks (`ar_head`).
    pub ar_n_layer: usize,
    pub n_head: usize,
    /// Grouped key/value heads; `None` means `n_head` (plain multi-head attention).
    #[serde(default)]
    pub n_kv_head: Option<usize>,
    #[serde(default = "multiple_of")]
    pub multiple_of: usize,
    #[serde(default)]
    pub ffn_dim_multiplier: Option<f64>,
    #[serde(default = "norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "rope_base")]
    pub rope_base: f64,
    /// One vocabulary per sub-token, in the official order (1 = vis, 2 = sem / sem_mid,
    /// 3 = sem_high); its length is k.
    pub vocab_sizes: Vec<usize>,
    pub num_classes: usize,
    /// The classes' names in label order (`extract-codes` takes them from the data folders);
    /// empty when unknown, as in the official checkpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    /// Prefix tokens for the condition; class-conditional models use exactly 1.
    #[serde(default = "one")]
    pub cls_token_num: usize,
    /// Tokens per image: the square of the token grid side.
    pub block_size: usize,
    /// Label dropout for classifier-free guidance; when > 0 the label table has an extra
    /// "null class" row, which unconditional sampling uses.
    #[serde(default = "dropout")]
    pub class_dropout_prob: f64,
    #[serde(default = "dropout")]
    pub token_dropout_p: f64,
    #[serde(default)]
    pub attn_dropout_p: f64,
    #[serde(default = "dropout")]
    pub resid_dropout_p: f64,
    #[serde(default = "dropout")]
    pub ffn_dropout_p: f64,
}

fn multiple_of() -> usize {
    256
}
fn norm_eps() -> f64 {
    1e-5
}
fn rope_base() -> f64 {
    10000.0
}
fn one() -> usize {
    1
}
fn dropout() -> f64 {
    0.1
}

/// Names of the presets accepted by [`FarConfig::preset`].
pub const FAR_PRESETS: &[&str] = &[
    "far-b-dual",
    "far-b-triple",
    "far-l-dual",
    "far-l-triple",
    "small-dual",
    "small-triple",
    "tiny-dual",
    "tiny-triple",
];

impl FarConfig {
    pub fn preset(name: &str) -> Result<Self> {
        // (n_layer, n_head, dim, ar_n_layer) as in the official FAR_B / FAR_L constructors.
        let official = |n_layer, n_head, dim, ar_n_layer, k| Self {
            dim,
            n_layer,
            ar_n_layer,
            n_head,
            vocab_sizes: vec![16384; k],
            num_classes: 1000,
            block_size: 256,
            ..Self::base()
        };
        let small = |dim, n_layer, k| Self {
            dim,
            n_layer,
            ar_n_layer: 1,
            n_head: 4,
            vocab_sizes: vec![1024; k],
            num_classes: 10,
            block_size: 64,
            ..Self::base()
        };
        let config = match name {
            "far-b-dual" => official(24, 16, 1024, 3, 2),
            "far-b-triple" => official(24, 16, 1024, 3, 3),
            "far-l-dual" => official(36, 20, 1280, 4, 2),
            "far-l-triple" => official(36, 20, 1280, 4, 3),
            "small-dual" => small(128, 4, 2),
            "small-triple" => small(128, 4, 3),
            // For training on a CPU in minutes.
            "tiny-dual" => small(64, 2, 2),
            "tiny-triple" => small(64, 2, 3),
            _ => return Err(Error::Config(format!("unknown FAR preset '{name}' (known: {})", FAR_PRESETS.join(", ")))),
        };
        config.validate()?;
        Ok(config)
    }

    fn base() -> Self {
        Self {
            dim: 0,
            n_layer: 0,
            ar_n_layer: 0,
            n_head: 1,
            n_kv_head: None,
            multiple_of: multiple_of(),
            ffn_dim_multiplier: None,
            norm_eps: norm_eps(),
            rope_base: rope_base(),
            vocab_sizes: Vec::new(),
            num_classes: 0,
            class_names: Vec::new(),
            cls_token_num: 1,
            block_size: 0,
            class_dropout_prob: dropout(),
            token_dropout_p: dropout(),
            attn_dropout_p: 0.0,
            resid_dropout_p: dropout(),
            ffn_dropout_p: dropout(),
        }
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(text).map_err(|e| Error::Config(format!("FAR config JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Number of sub-tokens per position.
    pub fn k(&self) -> usize {
        self.vocab_sizes.len()
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.n_head
    }

    pub fn kv_heads(&self) -> usize {
        self.n_kv_head.unwrap_or(self.n_head)
    }

    /// SwiGLU hidden size, rounded up to `multiple_of` as the official `FeedForward` does.
    pub fn ffn_hidden_dim(&self) -> usize {
        let mut hidden = 2 * 4 * self.dim / 3;
        if let Some(multiplier) = self.ffn_dim_multiplier {
            hidden = (multiplier * hidden as f64) as usize;
        }
        hidden.div_ceil(self.multiple_of) * self.multiple_of
    }

    /// Bytes of f32 key/value caches for `rows` sequences (backbone over every position, the
    /// head over the k sub-tokens of one), in u128 so that no count wraps.
    pub fn kv_cache_bytes(&self, rows: usize) -> u128 {
        let per_position = crate::bounds::mul(&[2, self.kv_heads(), self.head_dim(), 4]);
        let backbone = crate::bounds::mul(&[self.n_layer, self.block_size + self.cls_token_num]);
        let head = crate::bounds::mul(&[self.ar_n_layer, self.k() + 1]);
        (backbone + head) * per_position * rows as u128
    }

    /// Side of the square token grid.
    pub fn grid_size(&self) -> usize {
        (self.block_size as f64).sqrt().round() as usize
    }

    /// Rows of the label table: the classes, plus the null class when labels can be dropped.
    pub fn label_rows(&self) -> usize {
        self.num_classes + usize::from(self.class_dropout_prob > 0.0)
    }

    /// The null-class label used for the unconditional half of classifier-free guidance.
    pub fn null_class(&self) -> Option<usize> {
        (self.class_dropout_prob > 0.0).then_some(self.num_classes)
    }

    /// The label of the class named `name`, or a label given as a number.
    pub fn class_label(&self, name: &str) -> Result<usize> {
        if let Some(label) = self.class_names.iter().position(|n| n == name) {
            return Ok(label);
        }
        match name.parse::<usize>() {
            Ok(label) if label < self.num_classes => Ok(label),
            _ if self.class_names.is_empty() => Err(Error::Input(format!(
                "class '{name}' is not a label in 0..{} (this generator stores no class names)",
                self.num_classes
            ))),
            _ => Err(Error::Input(format!(
                "no class '{name}': this generator knows {} (or labels 0..{})",
                self.class_names.join(", "),
                self.num_classes
            ))),
        }
    }

    /// The name of class `label`, or the label as text when the generator stores no names.
    pub fn class_name(&self, label: usize) -> String {
        self.class_names.get(label).cloned().unwrap_or_else(|| label.to_string())
    }

    /// Errors unless `tokenizer` decodes what this generator makes: one codebook of the same
    /// size per sub-token, and a token grid of `block_size` positions.
    pub fn check_tokenizer(&self, tokenizer: &TokenizerConfig) -> Result<()> {
        let sizes: Vec<usize> = tokenizer.codebooks.iter().map(|c| c.size).collect();
        if self.vocab_sizes != sizes {
            return Err(Error::Input(format!(
                "the generator's vocab_sizes {:?} differ from the tokenizer's codebook sizes {sizes:?}",
                self.vocab_sizes
            )));
        }
        let g = tokenizer.grid_size();
        if self.block_size != g * g {
            return Err(Error::Input(format!(
                "the generator makes {} tokens per image; the tokenizer's grid is {g}x{g}",
                self.block_size
            )));
        }
        Ok(())
    }

    /// Every size within the limits of [`crate::bounds`], before any of them is multiplied.
    fn check_bounds(&self) -> Result<()> {
        use crate::bounds::{count, real};
        count("dim", self.dim, 1..=8192)?;
        count("n_layer", self.n_layer, 1..=256)?;
        count("ar_n_layer", self.ar_n_layer, 1..=64)?;
        count("n_head", self.n_head, 1..=256)?;
        if let Some(kv) = self.n_kv_head {
            count("n_kv_head", kv, 1..=256)?;
        }
        count("multiple_of", self.multiple_of, 1..=8192)?;
        if let Some(multiplier) = self.ffn_dim_multiplier {
            real("ffn_dim_multiplier", multiplier, 0.01..=16.0)?;
        }
        count("FFN hidden size (from dim, ffn_dim_multiplier, multiple_of)", self.ffn_hidden_dim(), 1..=1 << 18)?;
        real("norm_eps", self.norm_eps, 1e-12..=1.0)?;
        real("rope_base", self.rope_base, 1.0..=1e9)?;
        count("vocab_sizes (k)", self.vocab_sizes.len(), 1..=8)?;
        for (i, &size) in self.vocab_sizes.iter().enumerate() {
            count(&format!("vocab_sizes[{i}]"), size, 2..=1 << 24)?;
        }
        count("num_classes", self.num_classes, 1..=1 << 20)?;
        if !self.class_names.is_empty() {
            count("class_names (one per class)", self.class_names.len(), self.num_classes..=self.num_classes)?;
        }
        for (i, name) in self.class_names.iter().enumerate() {
            count(&format!("class_names[{i}] (bytes)"), name.len(), 1..=256)?;
        }
        count("block_size", self.block_size, 1..=1 << 16)?;
        let layer = {
            use crate::bounds::mul;
            mul(&[4 * self.dim, self.dim]) + mul(&[3 * self.dim, self.ffn_hidden_dim()])
        };
        let tables: u128 = self.vocab_sizes.iter().map(|&v| 2 * crate::bounds::mul(&[v, self.dim])).sum();
        let labels = crate::bounds::mul(&[self.num_classes + 1, self.dim]);
        crate::bounds::parameters("generator", layer * (self.n_layer + self.ar_n_layer) as u128 + tables + labels)
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::Config(msg));
        if self.vocab_sizes.is_empty() || self.vocab_sizes.contains(&0) {
            return fail(format!("`vocab_sizes` {:?} must list k >= 1 positive sizes", self.vocab_sizes));
        }
        self.check_bounds()?;
        if self.dim == 0 || self.n_head == 0 || self.dim % self.n_head != 0 {
            return fail(format!("`dim` {} is not a positive multiple of `n_head` {}", self.dim, self.n_head));
        }
        // The 2D rotary table splits each head's rotation pairs into a row half and a column half.
        if self.head_dim() % 4 != 0 {
            return fail(format!("head_dim = dim / n_head = {} must be a multiple of 4 for 2D RoPE", self.head_dim()));
        }
        if self.kv_heads() == 0 || self.n_head % self.kv_heads() != 0 {
            return fail(format!("`n_kv_head` {} must divide `n_head` {}", self.kv_heads(), self.n_head));
        }
        if self.n_layer == 0 || self.ar_n_layer == 0 {
            return fail("`n_layer` and `ar_n_layer` must be positive".into());
        }
        if self.multiple_of == 0 {
            return fail("`multiple_of` must be positive".into());
        }
        let grid = self.grid_size();
        if self.block_size == 0 || grid * grid != self.block_size {
            return fail(format!("`block_size` {} is not the square of a token grid side", self.block_size));
        }
        if self.cls_token_num != 1 {
            return fail(format!(
                "`cls_token_num` {} is not supported: the class embedding yields exactly 1 token",
                self.cls_token_num
            ));
        }
        if self.num_classes == 0 {
            return fail("`num_classes` must be positive".into());
        }
        for (name, p) in [
            ("class_dropout_prob", self.class_dropout_prob),
            ("token_dropout_p", self.token_dropout_p),
            ("attn_dropout_p", self.attn_dropout_p),
            ("resid_dropout_p", self.resid_dropout_p),
            ("ffn_dropout_p", self.ffn_dropout_p),
        ] {
            if !(0.0..1.0).contains(&p) {
                return fail(format!("`{name}` {p} must be in [0, 1)"));
            }
        }
        Ok(())
    }

    /// Reads the `config.json` of a golden reference case (official `ModelArgs` names).
    pub fn from_golden_json(value: &serde_json::Value) -> Result<Self> {
        let usize_of = |name: &str| -> Result<usize> {
            value
                .get(name)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| Error::Config(format!("golden config: `{name}` is missing or not an integer")))
        };
        let f64_of = |name: &str| -> Result<f64> {
            value
                .get(name)
                .and_then(|x| x.as_f64())
                .ok_or_else(|| Error::Config(format!("golden config: `{name}` is missing or not a number")))
        };
        if let Some(model_type) = value.get("model_type").and_then(|m| m.as_str()) {
            if model_type != "c2i" {
                return Err(Error::Config(format!(
                    "golden config: `model_type` '{model_type}' is not supported (only c2i)"
                )));
            }
        }
        let drop_path = value.get("drop_path_rate").and_then(|x| x.as_f64()).unwrap_or(0.0);
        if drop_path != 0.0 {
            return Err(Error::Config(format!(
                "golden config: `drop_path_rate` {drop_path} is not supported (only 0)"
            )));
        }
        let k = usize_of("num_codebooks")?;
        let config = Self {
            dim: usize_of("dim")?,
            n_layer: usize_of("n_layer")?,
            ar_n_layer: usize_of("ar_n_layer")?,
            n_head: usize_of("n_head")?,
            n_kv_head: value.get("n_kv_head").and_then(|x| x.as_u64()).map(|x| x as usize),
            multiple_of: usize_of("multiple_of")?,
            ffn_dim_multiplier: value.get("ffn_dim_multiplier").and_then(|x| x.as_f64()),
            norm_eps: f64_of("norm_eps")?,
            rope_base: f64_of("rope_base")?,
            vocab_sizes: vec![usize_of("vocab_size")?; k],
            num_classes: usize_of("num_classes")?,
            class_names: Vec::new(),
            cls_token_num: usize_of("cls_token_num")?,
            block_size: usize_of("block_size")?,
            class_dropout_prob: f64_of("class_dropout_prob")?,
            token_dropout_p: f64_of("token_dropout_p")?,
            attn_dropout_p: f64_of("attn_dropout_p")?,
            resid_dropout_p: f64_of("resid_dropout_p")?,
            ffn_dropout_p: f64_of("ffn_dropout_p")?,
        };
        config.validate()?;
        if let Some(hidden) = value.get("ffn_hidden_dim").and_then(|x| x.as_u64()) {
            if hidden as usize != config.ffn_hidden_dim() {
                return Err(Error::Config(format!(
                    "golden config: `ffn_hidden_dim` {hidden} differs from the computed {}",
                    config.ffn_hidden_dim()
                )));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip_through_json() {
        for name in FAR_PRESETS {
            let config = FarConfig::preset(name).unwrap();
            assert_eq!(FarConfig::from_json(&config.to_json()).unwrap(), config);
        }
        let b = FarConfig::preset("far-b-dual").unwrap();
        assert_eq!((b.k(), b.head_dim(), b.grid_size(), b.label_rows()), (2, 64, 16, 1001));
        // LlamaGen/FAR-B: int(2 * 4096 / 3) = 2730 rounded up to 2816.
        assert_eq!(b.ffn_hidden_dim(), 2816);
        assert_eq!(FarConfig::preset("far-l-triple").unwrap().ffn_hidden_dim(), 3584);
    }

    #[test]
    fn a_generator_pairs_with_the_tokenizer_of_its_vocabulary_and_grid() {
        let far = FarConfig::preset("small-dual").unwrap();
        far.check_tokenizer(&TokenizerConfig::preset("small-dual-ds8").unwrap()).unwrap();
        let err = far.check_tokenizer(&TokenizerConfig::preset("dual-ds16").unwrap()).unwrap_err().to_string();
        assert!(err.contains("[1024, 1024]") && err.contains("[16384, 16384]"), "{err}");
        let mut wide = FarConfig { vocab_sizes: vec![16384; 2], ..far };
        wide.block_size = 16 * 16 + 1;
        let err = wide.check_tokenizer(&TokenizerConfig::preset("dual-ds16").unwrap()).unwrap_err().to_string();
        assert!(err.contains("makes 257 tokens") && err.contains("16x16"), "{err}");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let mut config = FarConfig::preset("small-dual").unwrap();
        config.n_kv_head = Some(3);
        assert!(config.validate().unwrap_err().to_string().contains("n_kv_head"));
        config.n_kv_head = Some(2);
        config.validate().unwrap();
        config.block_size = 60;
        assert!(config.validate().unwrap_err().to_string().contains("block_size"));
        let err = FarConfig::preset("far-xl").unwrap_err().to_string();
        assert!(err.contains("far-xl") && err.contains("far-b-dual"), "{err}");
    }
}
