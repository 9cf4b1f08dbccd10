//! The representation-learning term of eq. 8: each supervised sub-codebook's feature-prediction
//! head learns its teacher's CLS feature through InfoNCE (official `VQLoss.forward`:
//! `semantic_weight * semantic_loss`, Dual: CLIP on `sem`; Triple: DINOv2 on `sem_mid`, CLIP on
//! `sem_high`).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::TokenizerConfig;
use crate::error::{Error, Result};
use crate::teachers::{Teacher, TeacherFeatures};

/// Where a supervised sub-codebook's teacher features come from.
pub enum TeacherSource<B: Backend> {
    /// A frozen teacher run on every training batch, on exactly the images the tokenizer sees.
    Live(Box<Teacher<B>>),
    /// Features computed once per image id. They describe the stored image, so they only match
    /// training batches made without random crops or flips.
    Precomputed(TeacherFeatures),
}

impl<B: Backend> TeacherSource<B> {
    pub fn width(&self) -> usize {
        match self {
            TeacherSource::Live(teacher) => teacher.hidden_size(),
            TeacherSource::Precomputed(features) => features.width(),
        }
    }

    /// Teacher CLS features [B, width] of `images` ([B, 3, S, S] in [-1, 1]) whose ids are `ids`.
    pub fn features(&self, images: &Tensor<B, 4>, ids: &[String]) -> Result<Tensor<B, 2>> {
        match self {
            TeacherSource::Live(teacher) => Ok(teacher.cls_feature(images.clone()).detach()),
            TeacherSource::Precomputed(features) => {
                let batch = images.dims()[0];
                if ids.len() != batch {
                    return Err(Error::Input(format!(
                        "precomputed teacher features need one image id per image; got {} ids for {batch} images",
                        ids.len()
                    )));
                }
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                features.batch(&ids, &images.device())
            }
        }
    }
}

/// Names of the sub-codebooks with a feature-prediction head, in config order: the order in
/// which teachers are assigned to them.
pub fn supervised_codebooks(config: &TokenizerConfig) -> Vec<&str> {
    config.codebooks.iter().filter(|c| c.feat_pred.is_some()).map(|c| c.name.as_str()).collect()
}

/// Checks that there is no teacher (no semantic term) or one per supervised sub-codebook, and
/// that each teacher's width equals its head's.
pub fn check_teachers<B: Backend>(config: &TokenizerConfig, teachers: &[TeacherSource<B>]) -> Result<()> {
    let heads: Vec<_> =
        config.codebooks.iter().filter_map(|c| c.feat_pred.as_ref().map(|fp| (c.name.as_str(), fp.width))).collect();
    if !teachers.is_empty() && teachers.len() != heads.len() {
        let names: Vec<&str> = heads.iter().map(|(name, _)| *name).collect();
        return Err(Error::Config(format!(
            "{} teacher(s) given but the config has {} supervised sub-codebook(s) [{}]; give one teacher each, in this order",
            teachers.len(),
            heads.len(),
            names.join(", ")
        )));
    }
    for ((name, width), teacher) in heads.iter().zip(teachers) {
        if teacher.width() != *width {
            return Err(Error::Config(format!(
                "sub-codebook '{name}': its feature-prediction head is {width} wide but its teacher's features are {} wide",
                teacher.width()
            )));
        }
    }
    Ok(())
}
