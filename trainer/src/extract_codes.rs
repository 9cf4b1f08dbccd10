//! `fqgan-trainer extract-codes`: encode a labelled image folder (class = sub-folder) with a
//! tokenizer into one codes file for `train-far` (official `extract_codes_c2i_*.py`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use fqgan::burn::tensor::backend::Backend;
use fqgan::data::{ImageDataset, Views};
use fqgan::device::BackendTask;
use fqgan::fingerprint::Fingerprint;
use fqgan::image::images_to_tensor;
use fqgan::tokenizer::LoadPurpose;
use fqgan::train::codes::Codes;

use crate::run_dir::progress_bar;
use crate::TokenizerArg;

#[derive(Args, Debug, Clone)]
pub struct ExtractCodesArgs {
    /// Labelled images: folders whose sub-folders are the classes (searched recursively),
    /// zip/pk3 archives or image files.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Output codes file (safetensors).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Views of each image to encode: `center` (one centre crop), `flip` (it and its mirror),
    /// `ten-crop` (the official recipe: 4 corners and the centre of a crop --crop-range times
    /// the model's size, and their mirrors).
    #[arg(long, value_enum, default_value = "center")]
    pub views: ViewsArg,
    /// For `ten-crop`: the centre crop's size relative to the model's image size (1 to 4).
    #[arg(long, default_value_t = 1.1)]
    pub crop_range: f32,
    /// Images encoded together (each with all its views).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Skip (and list) unreadable images instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ViewsArg {
    Center,
    Flip,
    TenCrop,
}

impl BackendTask for ExtractCodesArgs {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let views = match self.views {
            ViewsArg::Center => Views::Center,
            ViewsArg::Flip => Views::CenterAndFlip,
            ViewsArg::TenCrop if (1.0..=4.0).contains(&self.crop_range) => {
                Views::TenCrop { crop_range: self.crop_range }
            }
            ViewsArg::TenCrop => bail!("--crop-range {} must be in 1..=4", self.crop_range),
        };
        if self.batch_size == 0 {
            bail!("--batch-size must be positive");
        }
        let model = self.tokenizer.load::<B>(LoadPurpose::Inference, &device)?;
        let config = model.config().clone();
        let dataset = ImageDataset::scan(&self.data)?;
        let size = config.image_size as u32;
        let per_image = views.count();
        let mut codes = Codes {
            ids: Vec::new(),
            views: per_image,
            tokens: config.grid_size() * config.grid_size(),
            vocab_sizes: config.codebooks.iter().map(|c| c.size).collect(),
            labels: Vec::new(),
            classes: dataset.classes.clone(),
            view_kind: views.describe(),
            tokenizer_fingerprint: Fingerprint::of(&model).to_string(),
            tokenizer_config: config.to_json(),
        };
        let mut skipped = Vec::new();
        let bar = progress_bar(dataset.len() as u64, 0, self.quiet);
        let indices: Vec<usize> = (0..dataset.len()).collect();
        for chunk in indices.chunks(self.batch_size) {
            let mut images = Vec::with_capacity(chunk.len() * per_image);
            for &i in chunk {
                match dataset.load(i) {
                    Ok(image) => {
                        images.extend(views.apply(&image, size));
                        codes.labels.push(dataset.items[i].class);
                    }
                    Err(err) if self.skip_bad => {
                        bar.println(format!("skipped: {err}"));
                        skipped.push(err.to_string());
                    }
                    Err(err) => return Err(err).context("use --skip-bad to leave unreadable images out"),
                }
            }
            if !images.is_empty() {
                // [B * views, k, h, w] in image-major order is the file's [images, views, k, tokens].
                let ids = model.encode(images_to_tensor::<B>(&images, &device)?);
                codes.ids.extend(ids.into_data().convert::<i32>().iter::<i32>());
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        if codes.labels.is_empty() {
            bail!("no image could be read ({} skipped)", skipped.len());
        }
        codes.save(&self.output)?;
        let mut per_class = vec![0usize; codes.classes.len()];
        for &label in &codes.labels {
            per_class[label] += 1;
        }
        let counts: Vec<String> = codes.classes.iter().zip(&per_class).map(|(name, n)| format!("{name}:{n}")).collect();
        println!(
            "wrote {}: {} images x {} views ({}), {} sub-tokens x {} tokens, vocab {:?}, {} skipped",
            self.output.display(),
            codes.images(),
            per_image,
            codes.view_kind,
            codes.k(),
            codes.tokens,
            codes.vocab_sizes,
            skipped.len()
        );
        println!("classes {}", counts.join(" "));
        Ok(())
    }
}
