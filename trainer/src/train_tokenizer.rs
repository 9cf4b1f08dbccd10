//! `fqgan-trainer train-tokenizer`: the training loop around
//! [`fqgan::train::tokenizer::TokenizerTraining`], with data loading, a progress bar, JSONL
//! metrics, reconstruction grids and checkpoints that resume exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fqgan::burn::backend::Autodiff;
use fqgan::burn::tensor::backend::{AutodiffBackend, Backend};
use fqgan::data::{center_crop, Augment, BadImages, ImageDataset, Loader, LoaderConfig};
use fqgan::device::BackendTask;
use fqgan::image::{image_grid, images_to_tensor, save_rgb, tensor_to_images};
use fqgan::loss::gan::{DiscLoss, GenLoss};
use fqgan::loss::lpips::{Lpips, LpipsConfig};
use fqgan::teachers::{Teacher, TeacherFeatures};
use fqgan::train::optim::AdamWConfig;
use fqgan::train::semantic::TeacherSource;
use fqgan::train::tokenizer::{MicroBatch, ObjectiveConfig, Reconstruction, TokenizerTraining};
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
    /// Images per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation): a step sees
    /// batch-size x grad-accum images, each micro-batch's loss scaled by 1/N. Keep it when
    /// resuming: the data order counts micro-batches.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub grad_accum: u64,
    /// Learning rate of both optimizers (constant).
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Reconstruction loss.
    #[arg(long, value_enum, default_value = "l2")]
    pub reconstruction: ReconstructionArg,
    /// Weight of the reconstruction term.
    #[arg(long, default_value_t = 1.0)]
    pub reconstruction_weight: f64,
    /// LPIPS VGG16 weights (torchvision/LPIPS key names, safetensors); no perceptual loss without.
    #[arg(long, value_name = "FILE")]
    pub lpips: Option<PathBuf>,
    /// Weight of the LPIPS term.
    #[arg(long, default_value_t = 1.0)]
    pub perceptual_weight: f64,
    /// Weight of the VQ + commitment + entropy losses.
    #[arg(long, default_value_t = 1.0)]
    pub codebook_weight: f64,
    /// Frozen teacher kind, once per supervised sub-codebook in config order (Dual: sem;
    /// Triple: sem_mid, sem_high — officially DINOv2, then CLIP); pairs with --teacher-weights.
    #[arg(long, value_enum)]
    pub teacher: Vec<TeacherKind>,
    /// HF CLIPVisionModel / Dinov2Model safetensors, one per --teacher.
    #[arg(long, value_name = "FILE")]
    pub teacher_weights: Vec<PathBuf>,
    /// HF config.json of each teacher (default: config.json next to its weights).
    #[arg(long, value_name = "FILE")]
    pub teacher_config: Vec<PathBuf>,
    /// Precomputed teacher CLS features (fqgan teacher-features file keyed by image id: the
    /// path relative to the --data folder), one per supervised sub-codebook, instead of live
    /// teachers. They describe whole images, so this turns off random crops and flips.
    #[arg(long, value_name = "FILE", conflicts_with = "teacher")]
    pub teacher_features: Vec<PathBuf>,
    /// Train on each image's centre crop, without random crops or flips (what
    /// --teacher-features implies; with a live teacher it gives the same training).
    #[arg(long)]
    pub center_crops: bool,
    /// Weight of each supervised sub-codebook's InfoNCE term (paper eq. 8); 0 turns it off.
    #[arg(long, default_value_t = 0.5)]
    pub semantic_weight: f64,
    /// Keep an exponential moving average of the weights with this decay (e.g. 0.999): used
    /// for the sample grids, saved in checkpoints and written as tokenizer-ema.safetensors.
    #[arg(long, value_name = "DECAY", value_parser = parse_decay)]
    pub ema: Option<f64>,
    #[arg(long, value_name = "KEY=VALUE", help = crate::provenance::NOTE_HELP)]
    pub note: Vec<String>,
    /// Weight of the adversarial terms.
    #[arg(long, default_value_t = 0.5)]
    pub disc_weight: f64,
    /// Step at which the discriminator starts.
    #[arg(long, default_value_t = 20_000)]
    pub disc_start: u64,
    /// Discriminator loss.
    #[arg(long, value_enum, default_value = "hinge")]
    pub disc_loss: DiscLossArg,
    /// Generator adversarial loss.
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

fn parse_decay(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if (0.0..1.0).contains(&d) => Ok(d),
        _ => Err(format!("'{s}' is not a decay in [0, 1)")),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeacherKind {
    Clip,
    Dinov2,
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
            let config = crate::read_config(args.preset.as_deref(), args.config.as_deref())?
                .unwrap_or(TokenizerConfig::preset("small-dual-ds8")?);
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
        semantic_weight: args.semantic_weight,
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
    let optim = AdamWConfig {
        lr: args.lr,
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        ..AdamWConfig::tokenizer()
    };
    let lpips = args.lpips.as_ref().map(|p| Lpips::load(p, &LpipsConfig::vgg16(), &device)).transpose()?;
    let teachers = teachers::<B>(&args, &device)?;
    let supervised = fqgan::train::semantic::supervised_codebooks(model.config());
    if teachers.is_empty() && !supervised.is_empty() {
        println!(
            "no teacher given: the feature-prediction heads of {} are not trained (see --teacher)",
            supervised.join(", ")
        );
    }
    let precomputed = !args.teacher_features.is_empty();
    let mut training = TokenizerTraining::new(model, objective, optim, lpips, &device).with_teachers(teachers)?;
    if let Some(decay) = args.ema {
        training = training.with_ema(decay);
    }
    if args.resume {
        run.resume(|last| {
            training.load_checkpoint(last, &device)?;
            Ok(training.step)
        })?;
    }

    let dataset = ImageDataset::scan(&args.data)?;
    let size = training.model.config().image_size as u32;
    let samples: Vec<usize> = (0..dataset.len().min(8)).collect();
    let sample_images = samples
        .iter()
        .map(|&i| dataset.load(i).map(|img| center_crop(&img, size)))
        .collect::<fqgan::Result<Vec<_>>>()?;
    let ids: Vec<String> = dataset.items.iter().map(|item| item.id.clone()).collect();
    let micro_batches = args.grad_accum as usize;
    let loader = Loader::new(
        dataset,
        if precomputed || args.center_crops {
            Augment::center(size)
        } else {
            Augment { size, min_crop_fraction: 0.8, hflip: true }
        },
        LoaderConfig {
            batch_size: args.batch_size,
            seed: args.seed,
            // The loader counts micro-batches.
            start_step: training.step * args.grad_accum,
            workers: args.workers,
            prefetch: 2,
            bad_images: if args.skip_bad { BadImages::Skip } else { BadImages::Fail },
        },
    );

    let mut metrics = run.metrics()?;
    let objective_is_l2 = matches!(args.reconstruction, ReconstructionArg::L2);
    let bar = progress_bar(args.steps, training.step, args.quiet);
    let mut skipped = 0;
    while training.step < args.steps {
        let start = Instant::now();
        let mut micro = Vec::with_capacity(micro_batches);
        let mut images_seen = 0;
        for _ in 0..micro_batches {
            let batch = loader.next_batch()?;
            skipped += batch.skipped.len();
            for bad in &batch.skipped {
                bar.println(format!("skipped: {bad}"));
            }
            images_seen += batch.images.len();
            let images = images_to_tensor::<B>(&batch.images, &device)?;
            micro.push(MicroBatch { images, ids: batch.indices.iter().map(|&i| ids[i].clone()).collect() });
        }
        let m = training.accumulated_step(micro)?;
        let per_second = images_seen as f64 / start.elapsed().as_secs_f64();
        let mut line = serde_json::to_value(&m)?;
        line["images_per_second"] = per_second.into();
        line["skipped_images"] = skipped.into();
        if objective_is_l2 {
            // The L2 term is the MSE of images in [-1, 1].
            line["psnr"] = fqgan::metrics::psnr_from_mse(m.reconstruction, 2.0).into();
        }
        writeln!(metrics, "{line}")?;
        let usage: Vec<String> = m.usage.iter().map(|u| format!("{:.0}%", u * 100.0)).collect();
        let semantic: Vec<String> = m.semantic.iter().map(|s| format!("{s:.3}")).collect();
        bar.set_message(format!(
            "rec {:.4} lpips {:.3} gan {:.3} sem {} usage {} {:.1} img/s",
            m.reconstruction,
            m.perceptual,
            m.gen_adv,
            semantic.join("/"),
            usage.join("/"),
            per_second
        ));
        bar.inc(1);
        let done = training.step == args.steps;
        if done || training.step % args.checkpoint_every == 0 {
            training.save_checkpoint(&run.checkpoint_path(training.step))?;
            run.prune_checkpoints(args.keep_last)?;
        }
        if done || (args.image_every > 0 && training.step % args.image_every == 0) {
            let path = args.out.join(format!("samples-{:08}.png", training.step));
            save_rgb(&path, &reconstruction_grid(&training.eval_model(), &sample_images, &device)?)?;
        }
    }
    bar.finish();
    drop(metrics);
    crate::curves::write_for_run(&run.path);
    let provenance = provenance(&args, training.step)?;
    let model_path = args.out.join("tokenizer.safetensors");
    training.model.clone().save_with_provenance(&model_path, Some(&provenance))?;
    println!("wrote {} after {} steps ({skipped} images skipped)", model_path.display(), training.step);
    if let Some(ema) = &training.ema {
        let ema_path = args.out.join("tokenizer-ema.safetensors");
        ema.model.save_with_provenance(&ema_path, Some(&provenance))?;
        println!("wrote {} (EMA weights, decay {})", ema_path.display(), ema.decay);
    }
    Ok(())
}

/// What the final model files record about their training: data, steps, seed, objective
/// settings, the trainer's version and commit, and the caller's `--note`s.
fn provenance(args: &TrainTokenizerArgs, steps: u64) -> Result<serde_json::Value> {
    crate::provenance::record(
        &args.note,
        serde_json::json!({
            "data": args.data.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "steps": steps,
            "batch_size": args.batch_size,
            "grad_accum": args.grad_accum,
            "lr": args.lr,
            "seed": args.seed,
            "disc_start": args.disc_start,
            "ema": args.ema,
        }),
    )
}

/// One teacher per supervised sub-codebook, from --teacher/--teacher-weights or --teacher-features.
fn teachers<B: Backend>(args: &TrainTokenizerArgs, device: &B::Device) -> Result<Vec<TeacherSource<B>>> {
    if !args.teacher_features.is_empty() {
        return args
            .teacher_features
            .iter()
            .map(|path| {
                Ok(TeacherSource::Precomputed(
                    TeacherFeatures::read(path).with_context(|| format!("--teacher-features {}", path.display()))?,
                ))
            })
            .collect();
    }
    if args.teacher.len() != args.teacher_weights.len() {
        bail!(
            "{} --teacher but {} --teacher-weights; give one weights file per teacher",
            args.teacher.len(),
            args.teacher_weights.len()
        );
    }
    if !args.teacher_config.is_empty() && args.teacher_config.len() != args.teacher.len() {
        bail!(
            "{} --teacher-config for {} teachers; give one per teacher or none",
            args.teacher_config.len(),
            args.teacher.len()
        );
    }
    let mut teachers = Vec::new();
    for (i, (kind, weights)) in args.teacher.iter().zip(&args.teacher_weights).enumerate() {
        let config = args.teacher_config.get(i).cloned().unwrap_or_else(|| default_teacher_config(weights));
        teachers.push(TeacherSource::Live(Box::new(load_teacher(*kind, weights, &config, device)?)));
    }
    Ok(teachers)
}

/// HF model folders keep `config.json` next to the weights.
pub fn default_teacher_config(weights: &Path) -> PathBuf {
    weights.with_file_name("config.json")
}

/// Loads a frozen teacher and checks it is of the `kind` asked for.
pub fn load_teacher<B: Backend>(
    kind: TeacherKind,
    weights: &Path,
    config: &Path,
    device: &B::Device,
) -> Result<Teacher<B>> {
    let teacher = Teacher::<B>::load(config, weights, device)
        .with_context(|| format!("loading teacher {}", weights.display()))?;
    let loaded = match teacher {
        Teacher::Clip(_) => TeacherKind::Clip,
        Teacher::Dinov2(_) => TeacherKind::Dinov2,
    };
    if loaded != kind {
        bail!("--teacher {kind:?} but {} describes a {loaded:?} model", config.display());
    }
    Ok(teacher)
}

/// Rows: inputs, reconstructions, then one row per sub-codebook decoded alone.
pub fn reconstruction_grid<B: Backend>(
    model: &Tokenizer<B>,
    images: &[fqgan::image::RgbImage],
    device: &B::Device,
) -> Result<fqgan::image::RgbImage> {
    let codes = model.encode(images_to_tensor::<B>(images, device)?);
    let mut rows = vec![images.to_vec(), tensor_to_images(model.decode(codes.clone()))];
    for i in 0..model.config().k() {
        rows.push(tensor_to_images(model.decode_subset(codes.clone(), &[i])));
    }
    Ok(image_grid(&rows.concat(), images.len()))
}
