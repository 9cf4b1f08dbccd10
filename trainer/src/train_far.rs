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
use fqgan::train::far::{eval_loss, EvalClass, FarTraining};
use fqgan::train::optim::AdamWConfig;
use fqgan::weights::TensorFile;
use fqgan::{Far, FarConfig};
use serde_json::json;

use crate::run_dir::{progress_bar, RunDir};

#[derive(Args, Debug, Clone)]
pub struct TrainFarArgs {
    /// Training codes from `extract-codes`.
    #[arg(long, value_name = "FILE")]
    pub codes: PathBuf,
    /// Validation codes (same tokenizer and classes): their loss is reported every
    /// --val-every steps and at the end, with each image's class and, for a model trained with
    /// label dropout, with the null class (the gap says how much the generator uses the class).
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
    #[arg(long, value_name = "KEY=VALUE", help = crate::provenance::NOTE_HELP)]
    pub note: Vec<String>,
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
/// fitted to them. A model without class names takes the codes' names.
fn new_model<B: AutodiffBackend>(args: &TrainFarArgs, codes: &Codes, device: &B::Device) -> Result<Far<B>> {
    // A flat data folder is one class named "": such codes name nothing.
    let names = if codes.classes.iter().all(|c| !c.is_empty()) { codes.classes.clone() } else { Vec::new() };
    let named = |mut config: FarConfig| {
        if config.class_names.is_empty() && config.num_classes == codes.classes.len() {
            config.class_names = names.clone();
        }
        config
    };
    let model = if let Some(path) = &args.init {
        let file = TensorFile::read(path).with_context(|| format!("reading --init {}", path.display()))?;
        let config = Far::<B>::embedded_config(&file)?.map(named);
        Far::<B>::from_tensor_file(&file, config.as_ref(), device)
            .with_context(|| format!("loading --init {}", path.display()))?
    } else if let Some(path) = &args.config {
        Far::<B>::new(&named(crate::read_far_config(None, Some(path))?.expect("a file")), device)?
    } else {
        let name =
            args.preset.clone().unwrap_or(if codes.k() == 3 { "small-triple" } else { "small-dual" }.to_string());
        let preset = FarConfig::preset(&name)?;
        let config = FarConfig {
            vocab_sizes: codes.vocab_sizes.clone(),
            num_classes: codes.classes.len(),
            class_names: names.clone(),
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
        run.resume(|last| {
            training.load_checkpoint(last, &device)?;
            Ok(training.step)
        })?;
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
    let mut last_loss = f64::NAN;
    let mut last_val: Option<(u64, ValReport)> = None;
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
        if let (Some(val), true) = (&val, args.val_every > 0 && training.step % args.val_every == 0) {
            let report = ValReport::measure(&training.model.valid(), val, args.val_batch_size)?;
            writeln!(metrics, "{}", report.json(training.step))?;
            bar.suspend(|| println!("step {:>6}  train loss {:.4}  {report}", training.step, m.loss));
            last_val = Some((training.step, report));
        }
    }
    bar.finish();
    // The final model is always validated, also when no step ran (--steps at the resumed step).
    if let Some(val) = val.as_ref().filter(|_| last_val.as_ref().is_none_or(|(step, _)| *step != training.step)) {
        let report = ValReport::measure(&training.model.valid(), val, args.val_batch_size)?;
        writeln!(metrics, "{}", report.json(training.step))?;
        last_val = Some((training.step, report));
    }
    drop(metrics);
    crate::curves::write_for_run(&run.path);
    let model_path = args.out.join("far.safetensors");
    let provenance = crate::provenance::record(
        &args.note,
        json!({
            "codes": args.codes.display().to_string(),
            "steps": training.step,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "init": args.init.as_ref().map(|p| p.display().to_string()),
        }),
    )?;
    training.model.valid().save_with_provenance(&model_path, Some(&provenance))?;
    if last_loss.is_finite() {
        println!("final train loss {last_loss:.4} (last step), unigram baseline {train_baseline:.4}");
    }
    if let (Some((_, report)), Some(baseline)) = (&last_val, val_baseline) {
        println!("final {report}, unigram baseline {baseline:.4}");
    }
    println!("wrote {} after {} steps", model_path.display(), training.step);
    Ok(())
}

/// Validation loss with each image's class and, where the model has one, with the null class:
/// their gap is how much the generator uses the class.
struct ValReport {
    loss: f64,
    null_class_loss: Option<f64>,
    /// Sub-tokens per image: the gap per image is the per-sub-token gap times this. Against the
    /// ideal unconditional model (the mixture of the classes) knowing one of C classes lowers an
    /// image's loss by at most ln C nats in all, about 0.018 nats per sub-token for 10 classes
    /// and 128 sub-tokens, so the gap is reported per image; a learned null class, trained on
    /// the dropped labels only, is worse than that mixture and can leave a larger gap.
    sub_tokens: usize,
}

impl ValReport {
    fn measure<B: Backend>(model: &Far<B>, val: &Codes, batch_size: usize) -> Result<Self> {
        let loss = eval_loss(model, val, batch_size, EvalClass::Own)?;
        let null_class_loss = match model.config().null_class() {
            Some(_) => Some(eval_loss(model, val, batch_size, EvalClass::Null)?),
            None => None,
        };
        Ok(Self { loss, null_class_loss, sub_tokens: val.k() * val.tokens })
    }

    /// How many nats lower an image's total loss is when the generator knows its class.
    fn class_nats_per_image(&self) -> Option<f64> {
        self.null_class_loss.map(|null| (null - self.loss) * self.sub_tokens as f64)
    }

    fn json(&self, step: u64) -> serde_json::Value {
        json!({
            "step": step,
            "val_loss": self.loss,
            "val_null_class_loss": self.null_class_loss,
            "val_class_nats_per_image": self.class_nats_per_image(),
        })
    }
}

impl std::fmt::Display for ValReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "val loss {:.4}", self.loss)?;
        if let (Some(null), Some(gain)) = (self.null_class_loss, self.class_nats_per_image()) {
            write!(f, " (null class {null:.4}: the class is worth {gain:.2} nats per image)")?;
        }
        Ok(())
    }
}
