//! The models that ship inside the library, so that the main job works with no model files:
//! a texture tokenizer and a class-conditional generator trained on Debian's `ufoai-textures`
//! (their training, evaluation and licence: `models/README.md`, `models/LICENSE.md`).
//!
//! The weights are compiled in (about 15 MB); the loaders parse them like any other file, with
//! the same checks.

use burn::tensor::backend::Backend;

use crate::error::Result;
use crate::far::Far;
use crate::tokenizer::{LoadPurpose, Tokenizer};
use crate::weights::TensorFile;

/// One compiled-in safetensors file.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinModel {
    /// What the CLI and the C library call it.
    pub name: &'static str,
    /// What it is, in a line.
    pub description: &'static str,
    pub bytes: &'static [u8],
}

impl BuiltinModel {
    /// The file parsed (named `builtin:<name>` in errors).
    pub fn tensor_file(&self) -> Result<TensorFile> {
        TensorFile::from_bytes(self.bytes, format!("builtin:{}", self.name))
    }
}

/// `small-dual-ds8` (64x64 tiles, 8x8 tokens from two 1024-entry codebooks, 0.3125 bits per
/// pixel), 5000 steps on the 2015 ufoai training textures: 26.3 dB PSNR, SSIM 0.62 on the 218
/// validation textures.
pub const TOKENIZER: BuiltinModel = BuiltinModel {
    name: "ufoai-small-dual-ds8",
    description: "texture tokenizer, small-dual-ds8, trained on ufoai-textures (GPL-2+)",
    bytes: include_bytes!("../../models/ufoai-small-dual-ds8.safetensors"),
};

/// `small-dual` FAR over [`TOKENIZER`]'s codes of the same textures, one label per ufoai class
/// (names in its config's `class_names`).
pub const GENERATOR: BuiltinModel = BuiltinModel {
    name: "ufoai-far-small-dual",
    description: "texture generator, FAR small-dual, 10 ufoai classes, over ufoai-small-dual-ds8 (GPL-2+)",
    bytes: include_bytes!("../../models/ufoai-far-small-dual.safetensors"),
};

/// The built-in tokenizer on `device`.
pub fn tokenizer<B: Backend>(purpose: LoadPurpose, device: &B::Device) -> Result<Tokenizer<B>> {
    Tokenizer::from_tensor_file(&TOKENIZER.tensor_file()?, None, purpose, device)
}

/// The built-in generator on `device`; it makes tokens for [`tokenizer`].
pub fn generator<B: Backend>(device: &B::Device) -> Result<Far<B>> {
    Far::from_tensor_file(&GENERATOR.tensor_file()?, None, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;

    #[test]
    fn builtin_models_load_and_fit_each_other() {
        let device = Default::default();
        let tokenizer = tokenizer::<Cpu>(LoadPurpose::Inference, &device).unwrap();
        let generator = generator::<Cpu>(&device).unwrap();
        generator.config().check_tokenizer(tokenizer.config()).unwrap();
        assert_eq!(generator.config().class_names.len(), generator.config().num_classes);
        assert!(generator.config().class_names.iter().any(|c| c == "nature"), "{:?}", generator.config().class_names);
    }
}
