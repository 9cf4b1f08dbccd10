//! Tokenizer weight files: the project's own safetensors (config embedded in `__metadata__`)
//! and official checkpoints converted to safetensors, which use the same key names.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;

use super::model::Tokenizer;
use crate::config::TokenizerConfig;
use crate::error::{Error, Result};
use crate::weights::{load_module, module_tensors, write_safetensors, KeyMap, LoadRules, TensorFile};

pub use crate::weights::FORMAT_KEY;
/// `format` of a tokenizer file; checked on load (see [`TensorFile::check_format`]).
pub const TOKENIZER_FORMAT: &str = "fqgan.tokenizer.v1";
/// `__metadata__` key holding the [`TokenizerConfig`] as JSON.
pub const CONFIG_KEY: &str = "config";
/// Metadata key of a trained file's provenance (JSON), see [`Tokenizer::save_with_provenance`].
pub const PROVENANCE_KEY: &str = "provenance";

/// The metadata of a model file: its format, its config (JSON) and, when given, its provenance.
pub(crate) fn model_metadata(
    format: &str,
    config: String,
    provenance: Option<&serde_json::Value>,
) -> HashMap<String, String> {
    let mut metadata = HashMap::from([(FORMAT_KEY.to_string(), format.to_string()), (CONFIG_KEY.to_string(), config)]);
    if let Some(provenance) = provenance {
        metadata.insert(PROVENANCE_KEY.to_string(), provenance.to_string());
    }
    metadata
}

/// What to keep when loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadPurpose {
    /// Everything, including feature-prediction heads when the file has them.
    Training,
    /// Encode/decode only: feature-prediction heads are dropped and their keys ignored.
    Inference,
}

/// The official module name of a sub-codebook's encoder branch.
fn branch_module(name: &str) -> String {
    match name {
        "vis" => "visual_head".into(),
        "sem" => "semantic_head".into(),
        _ => match name.strip_prefix("sem_") {
            Some(level) => format!("semantic_head_{level}"),
            None => format!("{name}_head"),
        },
    }
}

/// Module paths that differ from official keys: the per-sub-codebook parts.
pub fn tokenizer_key_map(config: &TokenizerConfig) -> KeyMap {
    let mut renames = Vec::new();
    let mut rename = |from: String, to: String| renames.push((from, to));
    for (i, cb) in config.codebooks.iter().enumerate() {
        let name = &cb.name;
        rename(format!("encoder.heads.{i}.adapter."), format!("encoder.{}.0.", branch_module(name)));
        rename(format!("encoder.heads.{i}.norm_out."), format!("encoder.norm_out_{name}."));
        rename(format!("encoder.heads.{i}.conv_out."), format!("encoder.conv_out_{name}."));
        rename(format!("quant_conv.{i}."), format!("quant_conv_{name}."));
        rename(format!("quantize.{i}."), format!("quantize_{name}."));
    }
    let heads = config.codebooks.iter().filter_map(|c| c.feat_pred.as_ref());
    for (j, fp) in heads.enumerate() {
        let module = &fp.module;
        rename(format!("feat_pred.{j}.upscale_in."), format!("{module}.upscale.0."));
        rename(format!("feat_pred.{j}.upscale_out."), format!("{module}.upscale.2."));
        rename(format!("feat_pred.{j}."), format!("{module}."));
    }
    KeyMap::new(renames)
}

impl<B: Backend> Tokenizer<B> {
    /// Loads a tokenizer file. The config comes from the file's metadata, or from `config`
    /// when given (required for converted official checkpoints, which carry none).
    pub fn load(
        path: impl AsRef<Path>,
        config: Option<&TokenizerConfig>,
        purpose: LoadPurpose,
        device: &B::Device,
    ) -> Result<Self> {
        Self::from_tensor_file(&TensorFile::read(path)?, config, purpose, device)
    }

    /// As [`Tokenizer::load`], from a safetensors buffer (for engines that pack assets).
    pub fn load_from_bytes(
        bytes: &[u8],
        config: Option<&TokenizerConfig>,
        purpose: LoadPurpose,
        device: &B::Device,
    ) -> Result<Self> {
        Self::from_tensor_file(&TensorFile::from_bytes(bytes, "<memory>")?, config, purpose, device)
    }

    pub fn from_tensor_file(
        file: &TensorFile,
        config: Option<&TokenizerConfig>,
        purpose: LoadPurpose,
        device: &B::Device,
    ) -> Result<Self> {
        file.check_format(TOKENIZER_FORMAT, false)?;
        let mut config = match (config, file.metadata.get(CONFIG_KEY)) {
            (Some(config), _) => config.clone(),
            (None, Some(json)) => TokenizerConfig::from_json(json)
                .map_err(|e| Error::weights(&file.source, format!("embedded config: {e}")))?,
            (None, None) => {
                return Err(Error::weights(
                    &file.source,
                    "has no embedded config (an official checkpoint?): give the config or a preset",
                ))
            }
        };
        let feat_modules: Vec<String> =
            config.codebooks.iter().filter_map(|c| c.feat_pred.as_ref().map(|f| format!("{}.", f.module))).collect();
        // Official sampling checkpoints were saved without the training-only heads.
        for codebook in &mut config.codebooks {
            let in_file = codebook.feat_pred.as_ref().is_some_and(|f| file.has_prefix(&format!("{}.", f.module)));
            if purpose == LoadPurpose::Inference || !in_file {
                codebook.feat_pred = None;
            }
        }
        let model = Tokenizer::unloaded(&config, device)?;
        let optional = |key: &str| key.ends_with(".codebook_used");
        let ignorable =
            |key: &str| purpose == LoadPurpose::Inference && feat_modules.iter().any(|m| key.starts_with(m));
        load_module(model, file, &tokenizer_key_map(&config), &LoadRules { optional: &optional, ignorable: &ignorable })
    }

    /// Saves weights, buffers and config to one safetensors file, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with_provenance(path, None)
    }

    /// As [`Tokenizer::save`], with a `provenance` metadata entry (JSON: what the weights were
    /// trained on, for how long, by which commit) when given.
    pub fn save_with_provenance(&self, path: impl AsRef<Path>, provenance: Option<&serde_json::Value>) -> Result<()> {
        let tensors = module_tensors(self, &tokenizer_key_map(self.config()));
        write_safetensors(
            path.as_ref(),
            &tensors,
            model_metadata(TOKENIZER_FORMAT, self.config().to_json(), provenance),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_modules_follow_the_official_names() {
        assert_eq!(branch_module("vis"), "visual_head");
        assert_eq!(branch_module("sem"), "semantic_head");
        assert_eq!(branch_module("sem_mid"), "semantic_head_mid");
        assert_eq!(branch_module("sem_high"), "semantic_head_high");
        assert_eq!(branch_module("texture"), "texture_head");
    }
}
