//! `fqgan-trainer train-tokenizer`: the training loop around
//! [`fqgan::train::tokenizer::TokenizerTraining`], with data loading, a progress bar, JSONL
//! metrics, reconstruction grids and checkpoints that resume exactly.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use fqgan::burn::backend::Autodiff;
use fqgan::burn::tensor::backend::{AutodiffBackend, Backend};
use fqgan::data::{center_crop, Augment, BadImages, ImageDataset, Loader, LoaderConfig};
use fqgan::device::BackendTask;
use fqgan::image::{image_grid, images_to_tensor, save_rgb, tensor_to_images};
use fqgan::loss::gan::{DiscLoss, GenLoss};
use fqgan::loss::lpips::{Lpips, LpipsConfig};
use fqgan::train::optim::AdamWConfig;
use fqgan::train::tokenizer::{ObjectiveConfig, Reconstruction, TokenizerTraining};
use fqgan::{Tokenizer, TokenizerConfig};

use crate::run_dir::{progress_bar, RunDir};

#[derive(Args, Debug, Clone)]
pub struct TrainTokenizerArgs {
    /// Training images: folders (searched recursively), zip/pk3 archives or image files.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Run folder: checkpoints, metrics.jsonl, sample grids and the final model go here.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Config preset of a new model (see `presets`).
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// Config JSON of a new model.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start from these weights instead of a random init.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Total optimisation steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Learning rate of both optimizers (constant).
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Reconstruction loss.
    #[arg(long, value_enum, default_value = "l2")]
    pub reconstruction: ReconstructionArg,
    #[arg(long, default_value_t = 1.0)]
    pub reconstruction_weight: f64,
    /// LPIPS VGG16 weights (torchvision/LPIPS key names, safetensors); no perceptual loss without.
    #[arg(long, value_name = "FILE")]
    pub lpips: Option<PathBuf>,
    #[arg(long, default_value_t = 1.0)]
    pub perceptual_weight: f64,
    #[arg(long, default_value_t = 1.0)]
    pub codebook_weight: f64,
    /// Weight of the adversarial terms.
    #[arg(long, default_value_t = 0.5)]
    pub disc_weight: f64,
    /// Step at which the discriminator starts.
    #[arg(long, default_value_t = 20_000)]
    pub disc_start: u64,
    #[arg(long, value_enum, default_value = "hinge")]
    pub disc_loss: DiscLossArg,
    #[arg(long, value_enum, default_value = "hinge")]
    pub gen_loss: GenLossArg,
    /// Seed of the init, the data order and the augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image decoding threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Skip (and count) unreadable images instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Write a checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub keep_last: usize,
    /// Write a reconstruction grid every N steps (0: only at the end).
    #[arg(long, default_value_t = 250)]
    pub image_every: u64,
    /// Hide the progress bar (logs still go to metrics.jsonl).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReconstructionArg {
    L2,
    L1,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DiscLossArg {
    Hinge,
    Vanilla,
    NonSaturating,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum GenLossArg {
    Hinge,
    NonSaturating,
}

impl BackendTask for TrainTokenizerArgs {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        train::<Autodiff<B>>(self, device)
    }
}

fn train<B: AutodiffBackend>(args: TrainTokenizerArgs, device: B::Device) -> Result<()> {
    let run = RunDir::create(&args.out)?;
    B::seed(&device, args.seed);
    let model = match &args.init {
        Some(path) => {
            let config = crate::read_config(args.preset.as_deref(), args.config.as_deref())?;
            Tokenizer::<B>::load(path, config.as_ref(), fqgan::tokenizer::LoadPurpose::Training, &device)?
        }
        None => {
            let config = crate::read_config(args.preset.as_deref(), args.config.as_deref())?.unwrap_or(TokenizerConfig::preset("small-dual-ds8")?);
            Tokenizer::<B>::new(&config, &device)?
        }
    };
    let objective = ObjectiveConfig {
        reconstruction: match args.reconstruction {
            ReconstructionArg::L2 => Reconstruction::L2,
            ReconstructionArg::L1 => Reconstruction::L1,
        },
        reconstruction_weight: args.reconstruction_weight,
        perceptual_weight: args.perceptual_weight,
        codebook_weight: args.codebook_weight,
        disc_weight: args.disc_weight,
        disc_start: args.disc_start,
        disc_loss: match args.disc_loss {
            DiscLossArg::Hinge => DiscLoss::Hinge,
            DiscLossArg::Vanilla => DiscLoss::Vanilla,
            DiscLossArg::NonSaturating => DiscLoss::NonSaturating,
        },
        gen_loss: match args.gen_loss {
            GenLossArg::Hinge => GenLoss::Hinge,
            GenLossArg::NonSaturating => GenLoss::NonSaturating,
        },
        ..Default::default()
    };
    let optim = AdamWConfig { lr: args.lr, max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm), ..AdamWConfig::tokenizer() };
    let lpips = args.lpips.as_ref().map(|p| Lpips::load(p, &LpipsConfig::vgg16(), &device)).transpose()?;
    let mut training = TokenizerTraining::new(model, objective, optim, lpips, &device);
    if args.resume {
        if let Some(last) = run.latest_checkpoint() {
            training.load_checkpoint(&last, &device).with_context(|| format!("resuming from {}", last.display()))?;
            println!("resumed from {} at step {}", last.display(), training.step);
        }
    }

    let dataset = ImageDataset::scan(&args.data)?;
    let size = training.model.config().image_size as u32;
    let samples: Vec<usize> = (0..dataset.len().min(8)).collect();
    let sample_images = samples.iter().map(|&i| dataset.load(i).map(|img| center_crop(&img, size))).collect::<fqgan::Result<Vec<_>>>()?;
    let loader = Loader::new(
        dataset,
        Augment { size, min_crop_fraction: 0.8, hflip: true },
        LoaderConfig {
            batch_size: args.batch_size,
            seed: args.seed,
            start_step: training.step,
            workers: args.workers,
            prefetch: 2,
            bad_images: if args.skip_bad { BadImages::Skip } else { BadImages::Fail },
        },
    );

    let mut metrics = run.metrics()?;
    let bar = progress_bar(args.steps, training.step, args.quiet);
    let mut skipped = 0;
    while training.step < args.steps {
        let batch = loader.next_batch()?;
        skipped += batch.skipped.len();
        for bad in &batch.skipped {
            bar.println(format!("skipped: {bad}"));
        }
        let start = Instant::now();
        let images = images_to_tensor::<B>(&batch.images, &device)?;
        let m = training.train_step(images)?;
        let per_second = batch.images.len() as f64 / start.elapsed().as_secs_f64();
        let mut line = serde_json::to_value(&m)?;
        line["images_per_second"] = per_second.into();
        line["skipped_images"] = skipped.into();
        writeln!(metrics, "{line}")?;
        let usage: Vec<String> = m.usage.iter().map(|u| format!("{:.0}%", u * 100.0)).collect();
        bar.set_message(format!("rec {:.4} lpips {:.3} gan {:.3} usage {} {:.1} img/s", m.reconstruction, m.perceptual, m.gen_adv, usage.join("/"), per_second));
        bar.inc(1);
        let done = training.step == args.steps;
        if done || training.step % args.checkpoint_every == 0 {
            training.save_checkpoint(&run.checkpoint_path(training.step))?;
            run.prune_checkpoints(args.keep_last)?;
        }
        if done || (args.image_every > 0 && training.step % args.image_every == 0) {
            let path = args.out.join(format!("samples-{:08}.png", training.step));
            save_rgb(&path, &reconstruction_grid(&training.model, &sample_images, &device)?)?;
        }
    }
    bar.finish();
    let model_path = args.out.join("tokenizer.safetensors");
    training.model.clone().save(&model_path)?;
    println!("wrote {} after {} steps ({skipped} images skipped)", model_path.display(), training.step);
    Ok(())
}

/// Rows: inputs, reconstructions, then one row per sub-codebook decoded alone.
pub fn reconstruction_grid<B: Backend>(model: &Tokenizer<B>, images: &[fqgan::image::RgbImage], device: &B::Device) -> Result<fqgan::image::RgbImage> {
    let codes = model.encode(images_to_tensor::<B>(images, device)?)?;
    let mut rows = vec![images.to_vec(), tensor_to_images(model.decode(codes.clone())?)];
    for i in 0..model.config().k() {
        rows.push(tensor_to_images(model.decode_subset(codes.clone(), &[i])?));
    }
    Ok(image_grid(&rows.concat(), images.len()))
}
