//! `fqgan-trainer sample`: a grid of generated images, one row per class, to watch a FAR
//! generator train.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use fqgan::image::{image_grid, save_rgb};

use crate::generation::{generate_images, SamplingArgs};
use crate::{DeviceArg, FarArg, TokenizerArg};

#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// Where to write the grid (format from the extension, e.g. `.png`).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Classes to sample, one row each (comma-separated); default all, up to --max-classes.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<usize>,
    /// Rows when --classes is not given.
    #[arg(long, default_value_t = 16)]
    pub max_classes: usize,
    /// Images per class (the grid's columns).
    #[arg(long, default_value_t = 4)]
    pub per_class: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub far: FarArg,
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
}

impl SampleArgs {
    pub fn run(self, device: &DeviceArg) -> Result<()> {
        let device = device.configure()?;
        let far = self.far.session(device)?;
        let tokenizer = self.tokenizer.session(device)?;
        let num_classes = far.config().num_classes;
        let classes: Vec<usize> = if self.classes.is_empty() {
            (0..num_classes.min(self.max_classes)).collect()
        } else {
            self.classes.clone()
        };
        if let Some(bad) = classes.iter().find(|&&c| c >= num_classes) {
            bail!("--classes: {bad} is not a class of this generator (it has {num_classes}: 0..{})", num_classes - 1);
        }
        if self.per_class == 0 || classes.is_empty() {
            bail!("nothing to sample: give --per-class and --classes (or --max-classes) above 0");
        }
        let labels = classes.iter().map(|&c| Some(c)).collect();
        let request = self.sampling.request(labels, self.per_class, far.config().k())?;
        let generated = generate_images(&far, &tokenizer, &request)?;
        save_rgb(&self.output, &image_grid(&generated.images, self.per_class))?;
        println!(
            "wrote {}: classes {classes:?} x {} images, seed {}, {:.1} tokens/s",
            self.output.display(),
            self.per_class,
            self.sampling.seed,
            generated.tokens_per_second(far.config().block_size)
        );
        Ok(())
    }
}
