//! A model's fingerprint: what a `.fqt` file records so that it is never decoded with a model
//! whose token ids mean something else.
//!
//! It is SHA-256 (truncated to 128 bits) of the architecture that decoding depends on and of
//! every codebook's raw weights. Training-only settings (loss weights, feature-prediction
//! heads, usage window) are left out, so a training checkpoint and the inference file made
//! from it share a fingerprint. Raw (not l2-normalised) weights are hashed because they are
//! bit-identical on every backend, while computed values need not be.

use std::fmt;

use burn::tensor::backend::Backend;
use sha2::{Digest, Sha256};

use crate::config::TokenizerConfig;
use crate::tokenizer::Tokenizer;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Fingerprint(pub [u8; 16]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl Fingerprint {
    pub fn of<B: Backend>(model: &Tokenizer<B>) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"fqgan-fingerprint-v1\0");
        hash.update(decoding_config(model.config()).to_json().as_bytes());
        for quantizer in &model.quantize {
            let weights = quantizer.embedding.weight.val().into_data().convert::<f32>();
            hash.update((weights.shape.len() as u64).to_le_bytes());
            for &d in weights.shape.iter() {
                hash.update((d as u64).to_le_bytes());
            }
            for v in weights.iter::<f32>() {
                hash.update(v.to_le_bytes());
            }
        }
        let digest = hash.finalize();
        Self(std::array::from_fn(|i| digest[i]))
    }
}

/// The config with every field that does not change what a token id decodes to reset.
fn decoding_config(config: &TokenizerConfig) -> TokenizerConfig {
    let mut config = config.clone();
    for codebook in &mut config.codebooks {
        codebook.feat_pred = None;
    }
    config.dropout = 0.0;
    config.commit_beta = 0.0;
    config.entropy_loss_ratio = 0.0;
    config.entropy_temperature = 0.0;
    config.disentangle_ratio = 0.0;
    config.usage_window = 0;
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn fingerprints_follow_the_codebooks_not_the_training_settings() {
        let device = Default::default();
        let config = TokenizerConfig::preset("small-dual-ds8").unwrap();
        Flex::seed(&device, 1);
        let a = Tokenizer::<Flex>::new(&config, &device).unwrap();
        let fingerprint = Fingerprint::of(&a);
        assert_eq!(Fingerprint::of(&a.clone().without_feat_pred()), fingerprint);
        Flex::seed(&device, 2);
        let b = Tokenizer::<Flex>::new(&config, &device).unwrap();
        assert_ne!(Fingerprint::of(&b), fingerprint);
        assert_eq!(fingerprint.to_string().len(), 32);
    }
}
