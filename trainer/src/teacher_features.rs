//! `fqgan-trainer teacher-features`: runs a frozen teacher once over a dataset and stores one
//! CLS feature per image id, for `train-tokenizer --teacher-features`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fqgan::burn::tensor::backend::Backend;
use fqgan::data::{center_crop, ImageDataset};
use fqgan::device::BackendTask;
use fqgan::image::images_to_tensor;
use fqgan::teachers::TeacherFeatures;
use indicatif::{ProgressBar, ProgressStyle};

use crate::train_tokenizer::{default_teacher_config, load_teacher, TeacherKind};

#[derive(Args, Debug, Clone)]
pub struct TeacherFeaturesArgs {
    /// Training images, given exactly as to train-tokenizer --data (ids are relative to them).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// The tokenizer's image size: each image is centre-cropped and resized to it, as
    /// train-tokenizer does with precomputed features, before the teacher's own resizing.
    #[arg(long)]
    pub image_size: u32,
    /// Teacher kind.
    #[arg(long, value_enum)]
    pub teacher: TeacherKind,
    /// HF CLIPVisionModel / Dinov2Model safetensors.
    #[arg(long, value_name = "FILE")]
    pub teacher_weights: PathBuf,
    /// HF config.json (default: config.json next to the weights).
    #[arg(long, value_name = "FILE")]
    pub teacher_config: Option<PathBuf>,
    /// Images per teacher forward pass.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Output features file (safetensors).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

impl BackendTask for TeacherFeaturesArgs {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let config = self.teacher_config.clone().unwrap_or_else(|| default_teacher_config(&self.teacher_weights));
        let teacher = load_teacher::<B>(self.teacher, &self.teacher_weights, &config, &device)?;
        let dataset = ImageDataset::scan(&self.data)?;
        let mut features = TeacherFeatures::new(teacher.hidden_size());
        let bar = ProgressBar::new(dataset.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise}<{eta_precise}")
                .expect("valid template"),
        );
        let indices: Vec<usize> = (0..dataset.len()).collect();
        for chunk in indices.chunks(self.batch_size as usize) {
            let images = chunk
                .iter()
                .map(|&i| dataset.load(i).map(|image| center_crop(&image, self.image_size)))
                .collect::<fqgan::Result<Vec<_>>>()?;
            let ids: Vec<&str> = chunk.iter().map(|&i| dataset.items[i].id.as_str()).collect();
            features.insert_batch(&ids, teacher.cls_feature(images_to_tensor::<B>(&images, &device)?))?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
        features.save(&self.output).with_context(|| format!("writing {}", self.output.display()))?;
        println!("wrote {} ({} images, {} wide)", self.output.display(), features.len(), features.width());
        Ok(())
    }
}
