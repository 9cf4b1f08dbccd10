//! `fqgan-trainer`: create, import and check FQGAN models.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use fqgan::burn::tensor::backend::Backend;
use fqgan::device::BackendTask;
use fqgan::tokenizer::LoadPurpose;
use fqgan::{Far, FarConfig, Tokenizer, TokenizerConfig};
use fqgan_trainer::{read_config, read_far_config, DeviceArg};

#[derive(Parser)]
#[command(name = "fqgan-trainer", version, about = "Create, import, verify and train FQGAN models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check golden reference cases (folders with config.json, weights and io.safetensors
    /// made by the official PyTorch code): one line per tensor, then `N passed, M failed`.
    /// Exits non-zero when any tensor mismatches.
    VerifyGolden {
        /// Case folders, e.g. ../shared/golden/tok_dual_ds16.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Write a randomly initialised tokenizer (config embedded) to start training from or to
    /// try the tools with.
    Init {
        #[command(flatten)]
        new: NewModelArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Write a randomly initialised FAR generator (config embedded).
    InitFar {
        #[command(flatten)]
        new: NewModelArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Turn an official checkpoint (converted to safetensors by tools/convert_official.py)
    /// into a self-describing fqgan file with its config embedded.
    Import {
        /// The converted official weights.
        weights: PathBuf,
        /// The checkpoint's config preset, e.g. `dual-ds16`.
        #[arg(long, required_unless_present = "config")]
        preset: Option<String>,
        /// Config JSON file instead of a preset.
        #[arg(long, value_name = "FILE", conflicts_with = "preset")]
        config: Option<PathBuf>,
        /// Drop the training-only feature-prediction heads (smaller file for inference).
        #[arg(long)]
        inference: bool,
        /// Output safetensors file.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Train a tokenizer on a folder of images (or zip/pk3 archives): reconstruction,
    /// perceptual (with --lpips), adversarial (after --disc-start), VQ and disentanglement
    /// losses; checkpoints, metrics.jsonl and reconstruction grids go to --out.
    TrainTokenizer {
        #[command(flatten)]
        args: fqgan_trainer::train_tokenizer::TrainTokenizerArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Encode a labelled image folder (class = sub-folder) with a tokenizer into one codes
    /// file for train-far, optionally under flips or the official ten crops.
    ExtractCodes {
        #[command(flatten)]
        args: fqgan_trainer::extract_codes::ExtractCodesArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Train a FAR generator on a codes file: cross entropy over the k sub-tokens, label
    /// dropout, AdamW; metrics.jsonl, validation loss against a unigram baseline, checkpoints.
    TrainFar {
        #[command(flatten)]
        args: fqgan_trainer::train_far::TrainFarArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Generate a grid of images with a FAR generator and its tokenizer, one row per class.
    Sample {
        #[command(flatten)]
        args: fqgan_trainer::sample::SampleArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Evaluate a tokenizer on held-out images: PSNR, SSIM, LPIPS (with --lpips), per
    /// sub-codebook usage and perplexity, bits per pixel; JSON and Markdown reports.
    EvalTokenizer {
        #[command(flatten)]
        args: fqgan_trainer::eval_tokenizer::EvalTokenizerArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Run a frozen CLIP / DINOv2 teacher once over a dataset and store one CLS feature per
    /// image, for train-tokenizer --teacher-features.
    TeacherFeatures {
        #[command(flatten)]
        args: fqgan_trainer::teacher_features::TeacherFeaturesArgs,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Draw a run's training curves (loss and PSNR for a tokenizer, training and validation
    /// loss for a generator) from its metrics.jsonl as a PNG; the trainers write one as
    /// curves.png when they finish.
    Plot {
        /// A run's metrics.jsonl (or the run folder).
        metrics: PathBuf,
        /// Where to write the picture (default: curves.png next to the metrics).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the config presets, or print one as JSON.
    Presets {
        /// Print this preset's full config as JSON.
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    fqgan_trainer::set_up_process();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::VerifyGolden { cases, device } => {
            let failed = device.run(VerifyGolden { cases })??;
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Init { new, device } => {
            let config = read_config(new.preset.as_deref(), new.config.as_deref())?.expect("clap requires one");
            device.run(Init { config, new })??;
            Ok(ExitCode::SUCCESS)
        }
        Command::InitFar { new, device } => {
            let config = read_far_config(new.preset.as_deref(), new.config.as_deref())?.expect("clap requires one");
            device.run(InitFar { config, new })??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { weights, preset, config, inference, output } => {
            let config = read_config(preset.as_deref(), config.as_deref())?.expect("clap requires one");
            let purpose = if inference { LoadPurpose::Inference } else { LoadPurpose::Training };
            let device = Default::default();
            let model = Tokenizer::<fqgan::device::Cpu>::load(&weights, Some(&config), purpose, &device)?;
            model.save(&output)?;
            println!(
                "wrote {} ({} sub-codebooks, {} feature heads)",
                output.display(),
                model.config().k(),
                model.feat_pred.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::TrainTokenizer { args, device } => {
            device.run(args)??;
            Ok(ExitCode::SUCCESS)
        }
        Command::ExtractCodes { args, device } => {
            device.run(args)??;
            Ok(ExitCode::SUCCESS)
        }
        Command::TrainFar { args, device } => {
            device.run(args)??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample { args, device } => {
            args.run(&device)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::EvalTokenizer { args, device } => {
            device.run(args)??;
            Ok(ExitCode::SUCCESS)
        }
        Command::TeacherFeatures { args, device } => {
            device.run(args)??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plot { metrics, output } => {
            let metrics = if metrics.is_dir() { metrics.join("metrics.jsonl") } else { metrics };
            let output = output.unwrap_or_else(|| metrics.with_file_name("curves.png"));
            fqgan_trainer::curves::write(&metrics, &output)?;
            println!("wrote {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Presets { name: Some(name) } => {
            let json = match TokenizerConfig::preset(&name) {
                Ok(config) => config.to_json(),
                Err(_) if fqgan::far::config::FAR_PRESETS.contains(&name.as_str()) => {
                    FarConfig::preset(&name)?.to_json()
                }
                Err(err) => bail!("{err}; FAR presets: {}", fqgan::far::config::FAR_PRESETS.join(", ")),
            };
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Presets { name: None } => {
            for name in fqgan::config::TOKENIZER_PRESETS {
                let c = TokenizerConfig::preset(name)?;
                let codebooks: Vec<_> =
                    c.codebooks.iter().map(|cb| format!("{}:{}x{}", cb.name, cb.size, cb.dim)).collect();
                println!(
                    "{name:<18} image {:>3}  downsample {:>2}  ch {:>3}  codebooks {}",
                    c.image_size,
                    c.downsample(),
                    c.ch,
                    codebooks.join(" ")
                );
            }
            for name in fqgan::far::config::FAR_PRESETS {
                let c = FarConfig::preset(name)?;
                println!(
                    "{name:<18} dim {:>4}  layers {:>2}+{}  heads {:>2}  tokens {:>3}  vocab {:?}",
                    c.dim, c.n_layer, c.ar_n_layer, c.n_head, c.block_size, c.vocab_sizes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct VerifyGolden {
    cases: Vec<PathBuf>,
}

impl BackendTask for VerifyGolden {
    type Output = Result<usize>;

    fn run<B: Backend>(self, device: B::Device) -> Result<usize> {
        let mut failed = 0;
        for case in &self.cases {
            println!("== {}", case.display());
            let report =
                fqgan::verify::verify_case::<B>(case, &device).with_context(|| format!("case {}", case.display()))?;
            println!("{report}");
            failed += report.failed();
        }
        Ok(failed)
    }
}

/// A new, randomly initialised model: its config, its seed and where it goes.
#[derive(Args)]
struct NewModelArgs {
    /// Config preset (see `presets`).
    #[arg(long, required_unless_present = "config")]
    preset: Option<String>,
    /// Config JSON file instead of a preset.
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    config: Option<PathBuf>,
    /// Seed for the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output safetensors file.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

impl NewModelArgs {
    /// Seeds the backend and checks the output path before a model is built.
    fn prepare<B: Backend>(&self, device: &B::Device) -> Result<()> {
        if self.output.is_dir() {
            bail!("{} is a folder; give a file path", self.output.display());
        }
        B::seed(device, self.seed);
        Ok(())
    }
}

struct Init {
    config: TokenizerConfig,
    new: NewModelArgs,
}

impl BackendTask for Init {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        self.new.prepare::<B>(&device)?;
        let model = Tokenizer::<B>::new(&self.config, &device)?;
        model.save(&self.new.output)?;
        println!("wrote {} (random weights, seed {})", self.new.output.display(), self.new.seed);
        Ok(())
    }
}

struct InitFar {
    config: FarConfig,
    new: NewModelArgs,
}

impl BackendTask for InitFar {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        self.new.prepare::<B>(&device)?;
        let model = Far::<B>::new(&self.config, &device)?;
        model.save(&self.new.output)?;
        println!("wrote {} (random FAR weights, seed {})", self.new.output.display(), self.new.seed);
        Ok(())
    }
}
