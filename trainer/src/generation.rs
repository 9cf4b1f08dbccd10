//! Class-conditional generation shared by `fqgan generate` and `fqgan-trainer sample`: the
//! sampling flags and labels -> decoded images.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use fqgan::far::SubTokenSampling;
use fqgan::image::RgbImage;
use fqgan::runtime::{GenerateRequest, GeneratorSession, TokenizerSession};

use crate::assets::progress_bar;

/// Sampling flags; each takes one value for every sub-token or one per sub-token.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampler seed: the same seed gives the same images on the same device.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Classifier-free guidance scale: one value, or one per sub-token (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "2.0")]
    pub cfg_scale: Vec<f64>,
    /// Sampling temperature: one value, or one per sub-token.
    #[arg(long, value_delimiter = ',', default_value = "1.0")]
    pub temperature: Vec<f64>,
    /// Keep the k most likely ids (0 = all, 1 = greedy): one value, or one per sub-token.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub top_k: Vec<usize>,
    /// Nucleus sampling threshold: one value, or one per sub-token.
    #[arg(long, value_delimiter = ',', default_value = "1.0")]
    pub top_p: Vec<f64>,
}

impl SamplingArgs {
    /// The sampling of each of a k-sub-token generator's sub-tokens.
    pub fn sampling(&self, k: usize) -> Result<Vec<SubTokenSampling>> {
        fn pick<T: Copy>(values: &[T], j: usize, k: usize, flag: &str) -> Result<T> {
            match values.len() {
                1 => Ok(values[0]),
                n if n == k => Ok(values[j]),
                n => bail!("--{flag} has {n} values; give 1 or one per sub-token (k = {k})"),
            }
        }
        (0..k)
            .map(|j| {
                Ok(SubTokenSampling {
                    cfg_scale: pick(&self.cfg_scale, j, k, "cfg-scale")?,
                    temperature: pick(&self.temperature, j, k, "temperature")?,
                    top_k: pick(&self.top_k, j, k, "top-k")?,
                    top_p: pick(&self.top_p, j, k, "top-p")?,
                })
            })
            .collect()
    }

    /// A request for `per_label` images of each of `labels` with these flags.
    pub fn request(&self, labels: Vec<Option<usize>>, per_label: usize, k: usize) -> Result<GenerateRequest> {
        Ok(GenerateRequest { labels, per_label, sampling: self.sampling(k)?, seed: self.seed, prefix: None })
    }
}

pub struct Generated {
    pub images: Vec<RgbImage>,
    pub generate_time: Duration,
    pub decode_time: Duration,
}

impl Generated {
    /// Image tokens (all k sub-tokens of a position counting as one) generated per second.
    pub fn tokens_per_second(&self, block_size: usize) -> f64 {
        (self.images.len() * block_size) as f64 / self.generate_time.as_secs_f64()
    }
}

/// The images of `request`, generated and decoded, with a progress bar.
pub fn generate_images(
    far: &GeneratorSession,
    tokenizer: &TokenizerSession,
    request: &GenerateRequest,
) -> Result<Generated> {
    far.check_tokenizer(tokenizer)?;
    let start = Instant::now();
    let given = request.prefix.as_ref().map_or(0, |p| p.rows * far.config().grid_size());
    let bar = progress_bar((far.config().block_size - given) as u64, "generate");
    let grids = far
        .generate(request, &mut |done, _| {
            bar.set_position(done as u64);
            ControlFlow::Continue(())
        })?
        .expect("the callback never cancels");
    bar.finish_and_clear();
    let generate_time = start.elapsed();
    let start = Instant::now();
    let images = tokenizer.decode(&grids)?;
    Ok(Generated { images, generate_time, decode_time: start.elapsed() })
}
