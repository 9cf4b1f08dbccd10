//! FAR weight files: the project's own safetensors (config embedded in `__metadata__`) and
//! official checkpoints converted to safetensors, which use the same key names.

use std::path::Path;

use burn::tensor::backend::Backend;

use super::config::FarConfig;
use super::model::Far;
use crate::error::{Error, Result};
use crate::tokenizer::checkpoint::{model_metadata, CONFIG_KEY};
use crate::weights::{load_module, module_tensors, write_safetensors, KeyMap, LoadRules, TensorFile};

pub const FAR_FORMAT: &str = "fqgan.far.v1";

/// Module paths that differ from official keys: the numbered per-sub-token modules and the
/// head's parts, which the official model keeps at the top level.
pub fn far_key_map(config: &FarConfig) -> KeyMap {
    let mut renames =
        vec![("head.blocks.".to_string(), "ar_head.".to_string()), ("head.norm.".to_string(), "norm.".to_string())];
    for j in 0..config.k() {
        renames.push((format!("tok_embeddings.{j}."), format!("tok_embeddings_{}.", j + 1)));
        renames.push((format!("head.output.{j}."), format!("output_{}.", j + 1)));
    }
    KeyMap::new(renames)
}

impl<B: Backend> Far<B> {
    /// Loads a FAR file. The config comes from the file's metadata, or from `config` when
    /// given (required for converted official checkpoints, which carry none).
    pub fn load(path: impl AsRef<Path>, config: Option<&FarConfig>, device: &B::Device) -> Result<Self> {
        Self::from_tensor_file(&TensorFile::read(path)?, config, device)
    }

    /// As [`Far::load`], from a safetensors buffer.
    pub fn load_from_bytes(bytes: &[u8], config: Option<&FarConfig>, device: &B::Device) -> Result<Self> {
        Self::from_tensor_file(&TensorFile::from_bytes(bytes, "<memory>")?, config, device)
    }

    /// The config stored in `file`'s metadata, if it has one.
    pub fn embedded_config(file: &TensorFile) -> Result<Option<FarConfig>> {
        file.metadata
            .get(CONFIG_KEY)
            .map(|json| {
                FarConfig::from_json(json).map_err(|e| Error::weights(&file.source, format!("embedded config: {e}")))
            })
            .transpose()
    }

    pub fn from_tensor_file(file: &TensorFile, config: Option<&FarConfig>, device: &B::Device) -> Result<Self> {
        file.check_format(FAR_FORMAT, false)?;
        let config = match config {
            Some(config) => config.clone(),
            None => Self::embedded_config(file)?.ok_or_else(|| {
                Error::weights(
                    &file.source,
                    "has no embedded config (an official checkpoint?): give the config or a preset",
                )
            })?,
        };
        let model = Far::unloaded(&config, device)?;
        // A checkpoint saved after sampling may hold the official KV-cache buffers.
        let ignorable = |key: &str| key.contains(".kv_cache.") || key == "freqs_cis" || key == "causal_mask";
        load_module(model, file, &far_key_map(&config), &LoadRules { optional: &|_| false, ignorable: &ignorable })
    }

    /// Saves weights and config to one safetensors file, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with_provenance(path, None)
    }

    /// As [`Far::save`], with a `provenance` metadata entry (JSON) when given, as
    /// [`crate::Tokenizer::save_with_provenance`] writes it.
    pub fn save_with_provenance(&self, path: impl AsRef<Path>, provenance: Option<&serde_json::Value>) -> Result<()> {
        let tensors = module_tensors(self, &far_key_map(self.config()));
        write_safetensors(path.as_ref(), &tensors, model_metadata(FAR_FORMAT, self.config().to_json(), provenance))
    }
}
