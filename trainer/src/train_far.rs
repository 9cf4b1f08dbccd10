//! `fqgan-trainer train-far`: the FAR training loop around
//! [`fqgan::train::far::FarTraining`], with a progress bar, JSONL metrics, validation loss,
//! the unigram baseline to compare it with, and checkpoints that resume exactly.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use fqgan::burn::backend::Autodiff;
use fqgan::burn::module::{AutodiffModule, Module};
use fqgan::burn::tensor::backend::{AutodiffBackend, Backend};
use fqgan::device::BackendTask;
use fqgan::train::codes::{unigram_loss, Codes};
use fqgan::train::far::{eval_loss, FarTraining};
use fqgan::train::optim::AdamWConfig;
use fqgan::{Far, FarConfig};
use serde_json::json;

use crate::run_dir::{progress_bar, RunDir};

#[derive(Args, Debug, Clone)]
pub struct TrainFarArgs {
    /// Training codes from `extract-codes`.
    #[arg(long, value_name = "FILE")]
    pub codes: PathBuf,
    /// Validation codes (same tokenizer and classes): their loss is reported every
    /// --val-every steps and at the end.
    #[arg(long, value_name = "FILE")]
    pub val_codes: Option<PathBuf>,
    /// Run folder: checkpoints, metrics.jsonl and the final far.safetensors go here.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// FAR preset of a new model (see `presets`); its vocab_sizes, num_classes and
    /// block_size are set from the codes. Default `small-dual` (or `small-triple` for k = 3).
    #[arg(long, conflicts_with_all = ["config", "init"])]
    pub preset: Option<String>,
    /// FAR config JSON of a new model; it must match the codes.
    #[arg(long, value_name = "FILE", conflicts_with = "init")]
    pub config: Option<PathBuf>,
    /// Start from these FAR weights (config embedded) instead of a random init.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Total optimisation steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Images per step, each under one of its views picked at random.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Learning rate (constant). The official 1e-4 is for batch 256 and FAR-B; small models
    /// and batches train faster with more.
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    /// AdamW weight decay, on weight matrices and embeddings only (official 0.05).
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Seed of the init, the data order, the views, label dropout and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validation loss every N steps (0: only at the end).
    #[arg(long, default_value_t = 100)]
    pub val_every: u64,
    /// Batch size of the validation pass.
    #[arg(long, default_value_t = 64)]
    pub val_batch_size: usize,
    /// Write a checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    pub keep_last: usize,
    /// Hide the progress bar (metrics still go to metrics.jsonl and stdout).
    #[arg(long)]
    pub quiet: bool,
}

impl BackendTask for TrainFarArgs {
    type Output = Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        train::<Autodiff<B>>(self, device)
    }
}

/// The model to train: from --init, a config file that must fit the codes, or a preset
/// fitted to them.
fn new_model<B: AutodiffBackend>(args: &TrainFarArgs, codes: &Codes, device: &B::Device) -> Result<Far<B>> {
    let model = if let Some(path) = &args.init {
        Far::<B>::load(path, None, device).with_context(|| format!("loading --init {}", path.display()))?
    } else if let Some(path) = &args.config {
        Far::<B>::new(&crate::read_far_config(None, Some(path))?.expect("a file"), device)?
    } else {
        let name =
            args.preset.clone().unwrap_or(if codes.k() == 3 { "small-triple" } else { "small-dual" }.to_string());
        let preset = FarConfig::preset(&name)?;
        let config = FarConfig {
            vocab_sizes: codes.vocab_sizes.clone(),
            num_classes: codes.classes.len(),
            block_size: codes.tokens,
            ..preset
        };
        config.validate().with_context(|| format!("preset {name} fitted to the codes"))?;
        Far::<B>::new(&config, device)?
    };
    codes
        .check_far(model.config())
        .with_context(|| format!("the model does not fit the codes {}", args.codes.display()))?;
    Ok(model)
}

fn train<B: AutodiffBackend>(args: TrainFarArgs, device: B::Device) -> Result<()> {
    if args.batch_size == 0 || args.val_batch_size == 0 {
        bail!("--batch-size and --val-batch-size must be positive");
    }
    let run = RunDir::create(&args.out)?;
    let codes = Codes::load(&args.codes)?;
    let val = args.val_codes.as_ref().map(|p| Codes::load(p)).transpose()?;
    if let (Some(val), Some(path)) = (&val, &args.val_codes) {
        codes
            .check_compatible(val)
            .with_context(|| format!("--val-codes {} against --codes {}", path.display(), args.codes.display()))?;
    }
    B::seed(&device, args.seed);
    let model = new_model::<B>(&args, &codes, &device)?;
    let optim = AdamWConfig {
        lr: args.lr,
        weight_decay: args.weight_decay,
        max_grad_norm: (args.max_grad_norm > 0.0).then_some(args.max_grad_norm),
        ..AdamWConfig::far()
    };
    let mut training = FarTraining::new(model, optim, args.seed);
    if args.resume {
        if let Some(last) = run.latest_checkpoint() {
            training.load_checkpoint(&last, &device).with_context(|| format!("resuming from {}", last.display()))?;
            println!("resumed from {} at step {}", last.display(), training.step);
        }
    }
    let c = training.model.config();
    println!(
        "codes        {} images x {} views, {} classes, {} sub-tokens x {} tokens, vocab {:?}",
        codes.images(),
        codes.views,
        codes.classes.len(),
        codes.k(),
        codes.tokens,
        codes.vocab_sizes
    );
    println!(
        "model        dim {} layers {}+{} heads {}, {} parameters",
        c.dim,
        c.n_layer,
        c.ar_n_layer,
        c.n_head,
        training.model.num_params()
    );

    let mut metrics = run.metrics()?;
    let train_baseline = unigram_loss(&codes, &codes);
    let val_baseline = val.as_ref().map(|v| unigram_loss(&codes, v));
    println!(
        "unigram baseline train loss {train_baseline:.4}{}",
        val_baseline.map(|v| format!(", val loss {v:.4}")).unwrap_or_default()
    );
    writeln!(
        metrics,
        "{}",
        json!({"step": training.step, "unigram_train_loss": train_baseline, "unigram_val_loss": val_baseline})
    )?;

    let bar = progress_bar(args.steps, training.step, args.quiet);
    let tokens_per_step = (args.batch_size * codes.tokens) as f64;
    let (mut last_loss, mut last_val) = (f64::NAN, None);
    while training.step < args.steps {
        let start = Instant::now();
        let m = training.train_step(&codes, args.batch_size)?;
        let tokens_per_second = tokens_per_step / start.elapsed().as_secs_f64();
        let mut line = serde_json::to_value(&m)?;
        line["tokens_per_second"] = tokens_per_second.into();
        writeln!(metrics, "{line}")?;
        last_loss = m.loss;
        bar.set_message(format!("loss {:.4} |g| {:.2} {:.0} tok/s", m.loss, m.grad_norm, tokens_per_second));
        bar.inc(1);
        let done = training.step == args.steps;
        if done || training.step % args.checkpoint_every == 0 {
            training.save_checkpoint(&run.checkpoint_path(training.step))?;
            run.prune_checkpoints(args.keep_last)?;
        }
        if done || (args.val_every > 0 && training.step % args.val_every == 0) {
            if let Some(val) = &val {
                let loss = eval_loss(&training.model.valid(), val, args.val_batch_size)?;
                writeln!(metrics, "{}", json!({"step": training.step, "val_loss": loss}))?;
                bar.suspend(|| println!("step {:>6}  train loss {:.4}  val loss {loss:.4}", training.step, m.loss));
                last_val = Some(loss);
            }
        }
    }
    bar.finish();
    let model_path = args.out.join("far.safetensors");
    training.model.valid().save(&model_path)?;
    println!("final train loss {last_loss:.4} (last step), unigram baseline {train_baseline:.4}");
    if let (Some(loss), Some(baseline)) = (last_val, val_baseline) {
        println!("final val loss {loss:.4}, unigram baseline {baseline:.4}");
    }
    println!("wrote {} after {} steps", model_path.display(), training.step);
    Ok(())
}
