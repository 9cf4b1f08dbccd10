//! The `teacher` family: CLIP and DINOv2 features and the InfoNCE loss.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::Checker;
use crate::error::{Error, Result};
use crate::loss::semantic::info_nce;
use crate::teachers::preprocess::TEACHER_INPUT_SIZE;
use crate::teachers::{ClipVisionModel, Dinov2Model, ScalingLayer};

/// The `teacher` family: both towers rebuilt from their HF config and weights files, named
/// under `clip` / `dinov2` in the case config.
pub(super) fn verify_teachers<B: Backend>(
    dir: &Path,
    golden: &serde_json::Value,
    checker: &mut Checker<'_>,
    device: &B::Device,
) -> Result<()> {
    let file_of = |tower: &str, field: &str| -> Result<PathBuf> {
        golden.get(tower).and_then(|t| t.get(field)).and_then(|f| f.as_str()).map(|f| dir.join(f)).ok_or_else(|| {
            Error::Config(format!(
                "{}: `{tower}.{field}` is missing or not a string",
                dir.join("config.json").display()
            ))
        })
    };
    let input = |name: &str| -> Result<Tensor<B, 3>> {
        Ok(Tensor::from_data(checker.io.get(name)?.clone().convert::<f32>(), device))
    };
    let images = Tensor::<B, 4>::from_data(checker.io.get("images")?.clone().convert::<f32>(), device);
    let clip_head = input("semantic_feat_clip")?;
    let dino_head = input("semantic_feat_dino")?;
    // The official towers take the class token (token 0) of the feature-prediction head.
    let class_token = |head: Tensor<B, 3>| {
        let [b, _, width] = head.dims();
        head.narrow(1, 0, 1).reshape([b, width])
    };

    let clip =
        ClipVisionModel::<B>::load(&file_of("clip", "hf_config_file")?, &file_of("clip", "weights_file")?, device)?;
    let pixel_values = ScalingLayer::OPENAI_CLIP.forward(images.clone());
    checker.float("clip_pixel_values_0", pixel_values.clone().narrow(0, 0, 1));
    let out = clip.forward(pixel_values);
    checker.float("clip_embeddings_out", out.embeddings);
    checker.float("clip_hidden_states_last", out.last_hidden_state);
    let clip_cls = clip.cls_feature(images.clone());
    checker.float("clip_cls", clip_cls.clone());
    checker.float("clip_infonce", info_nce(class_token(clip_head), clip_cls)?);

    let dino =
        Dinov2Model::<B>::load(&file_of("dinov2", "hf_config_file")?, &file_of("dinov2", "weights_file")?, device)?;
    checker.float(
        "dino_pos_embed_interp",
        dino.embeddings.interpolate_pos_encoding(TEACHER_INPUT_SIZE, TEACHER_INPUT_SIZE),
    );
    let out = dino.forward(ScalingLayer::IMAGENET.forward(images.clone()));
    checker.float("dino_embeddings_out", out.embeddings);
    checker.float("dino_last_hidden_state", out.last_hidden_state);
    let dino_cls = dino.cls_feature(images);
    checker.float("dino_cls", dino_cls.clone());
    checker.float("dino_infonce", info_nce(class_token(dino_head), dino_cls)?);
    Ok(())
}
