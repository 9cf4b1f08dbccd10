//! The `tokenizer` family: encoder activations, indices, quantized features, decodes and losses.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::Checker;
use crate::config::TokenizerConfig;
use crate::error::Result;
use crate::tokenizer::{LoadPurpose, Tokenizer};
use crate::trace;
use crate::weights::TensorFile;

pub(super) fn verify_tokenizer<B: Backend>(
    dir: &Path,
    golden: &serde_json::Value,
    checker: &mut Checker<'_>,
    device: &B::Device,
) -> Result<()> {
    let config = TokenizerConfig::from_golden_json(golden)?;
    let weights = TensorFile::read(dir.join("weights.safetensors"))?;
    let model = Tokenizer::<B>::from_tensor_file(&weights, Some(&config), LoadPurpose::Training, device)?;
    let input = checker.io.get("input")?.clone();
    let input = Tensor::<B, 4>::from_data(input.convert::<f32>(), device);
    let names: Vec<&str> = config.codebooks.iter().map(|c| c.name.as_str()).collect();

    let (out, activations) = trace::capture(|| model.forward(input.clone(), false));
    for (name, activation) in activations {
        checker.recorded(&name, activation);
    }
    for (i, name) in names.iter().enumerate() {
        checker.float(&format!("h_{name}"), out.features[i].clone());
        checker.int(&format!("indices_{name}"), out.quantized[i].indices.clone());
        checker.float(&format!("quant_{name}"), out.quantized[i].quant.clone());
        if let Some(feat) = &out.feat_pred[i] {
            checker.float(&format!("feat_pred_{name}"), feat.clone());
        }
    }
    checker.float("disentangle_loss", out.disentangle_loss.clone());
    checker.float("dec", out.reconstruction.clone());

    let codes = model.encode(input.clone());
    checker.float("dec_code", model.decode(codes));

    let train = model.forward(input, true);
    for (name, losses) in names.iter().zip(train.losses()) {
        let losses = losses.expect("training forward has losses");
        checker.float(&format!("train_vq_loss_{name}"), losses.vq.clone());
        checker.float(&format!("train_commit_loss_{name}"), losses.commit.clone());
        checker.float(&format!("train_entropy_loss_{name}"), losses.entropy.clone());
        checker.float(&format!("train_codebook_usage_{name}"), losses.usage.clone());
    }
    checker.float("train_disentangle_loss", train.disentangle_loss);
    Ok(())
}
