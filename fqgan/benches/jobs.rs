//! The main CPU jobs, timed the way `tools/bench-vs-official.py` times the official PyTorch
//! code: warm-up excluded, median of repeated runs, random weights, one line per job.
//!
//!     cargo bench -p fqgan --bench jobs                       # all jobs, a table
//!     cargo bench -p fqgan --bench jobs -- --json out.json    # and the numbers as JSON
//!     cargo bench -p fqgan --bench jobs -- --only far,tile    # jobs whose name contains any
//!
//! The thread count comes from `--threads N` or `FQGAN_NUM_THREADS` (default: all cores).
//! Jobs: dual-ds16 load / encode / decode at 256x256; small-dual-ds8 encode / decode of 64x64
//! tiles, batch 1 and 16; FAR-B (dual) load and seconds per generated token with CFG 2.0,
//! batch 1 and 8; the small-dual-ds8 training step (L2 + VQ losses + AdamW), batch 8 of 64x64.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use fqgan::burn::backend::Autodiff;
use fqgan::burn::tensor::backend::Backend;
use fqgan::burn::tensor::{Distribution, Int, Tensor};
use fqgan::device::Cpu;
use fqgan::far::{generate_with_progress, Far, FarConfig, GenerateOptions, SubTokenSampling};
use fqgan::tokenizer::LoadPurpose;
use fqgan::train::optim::AdamWConfig;
use fqgan::train::tokenizer::{ObjectiveConfig, TokenizerTraining};
use fqgan::{Tokenizer, TokenizerConfig, WeightPrecision};

/// One measured job: `value` in `unit` (seconds, or images per second for training).
struct Row {
    job: String,
    value: f64,
    unit: &'static str,
}

/// Median seconds of `runs` calls of `f`, after one warm-up call.
fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

struct Bench {
    only: Vec<String>,
    rows: Vec<Row>,
    scratch: tempfile::TempDir,
}

impl Bench {
    fn wants(&self, job: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| job.contains(o.as_str()))
    }

    fn record(&mut self, job: impl Into<String>, value: f64, unit: &'static str) {
        let row = Row { job: job.into(), value, unit };
        println!("{:<44} {:>10.4} {}", row.job, row.value, row.unit);
        self.rows.push(row);
    }

    fn tokenizer_jobs(&mut self) {
        let device = Default::default();
        if self.wants("dual-ds16") {
            let config = TokenizerConfig::preset("dual-ds16").unwrap();
            let path = self.scratch.path().join("dual-ds16.safetensors");
            Tokenizer::<Cpu>::new(&config, &device).unwrap().without_feat_pred().save(&path).unwrap();
            let load = median_secs(3, || drop(load_tokenizer(&path)));
            self.record("dual-ds16 load (s)", load, "s");
            let model = load_tokenizer(&path);
            let images = random_images(1, 256);
            let codes = model.encode(images.clone());
            let encode = median_secs(3, || drop(model.encode(images.clone()).into_data()));
            self.record("dual-ds16 encode 256x256 (s)", encode, "s");
            let decode = median_secs(3, || drop(model.decode(codes.clone()).into_data()));
            self.record("dual-ds16 decode 256x256 (s)", decode, "s");
        }
        if self.wants("tile") {
            let mut config = TokenizerConfig::preset("small-dual-ds8").unwrap();
            config.image_size = 64;
            Cpu::seed(&device, 0);
            let model = Tokenizer::<Cpu>::new(&config, &device).unwrap().without_feat_pred();
            for batch in [1, 16] {
                let images = random_images(batch, 64);
                let codes = model.encode(images.clone());
                let runs = if batch == 1 { 21 } else { 5 };
                let encode = median_secs(runs, || drop(model.encode(images.clone()).into_data()));
                self.record(format!("small-dual-ds8 tile encode, batch {batch} (s/tile)"), encode / batch as f64, "s");
                let decode = median_secs(runs, || drop(model.decode(codes.clone()).into_data()));
                self.record(format!("small-dual-ds8 tile decode, batch {batch} (s/tile)"), decode / batch as f64, "s");
            }
        }
    }

    fn far_jobs(&mut self) {
        if !self.wants("far-b") {
            return;
        }
        let device = Default::default();
        let config = FarConfig::preset("far-b-dual").unwrap();
        let path = self.scratch.path().join("far-b.safetensors");
        Far::<Cpu>::new(&config, &device).unwrap().save(&path).unwrap();
        let load = median_secs(2, || drop(Far::<Cpu>::load(&path, None, &device).unwrap()));
        self.record("far-b load (s)", load, "s");
        let model = Far::<Cpu>::load(&path, None, &device).unwrap();
        std::fs::remove_file(&path).unwrap();
        let sampling = SubTokenSampling { cfg_scale: 2.0, ..SubTokenSampling::default() };
        let options = GenerateOptions::uniform(config.k(), sampling, 0);
        let bf16 = model.clone().with_weight_precision(WeightPrecision::Bf16);
        for (model, weights) in [(&model, ""), (&bf16, " bf16")] {
            for batch in [1usize, 8] {
                let per_token = seconds_per_token(model, batch, &options);
                self.record(format!("far-b{weights} sampling cfg 2.0, batch {batch} (s/token)"), per_token, "s");
            }
        }
    }

    fn training_jobs(&mut self) {
        if !self.wants("train") {
            return;
        }
        type B = Autodiff<Cpu>;
        let device = Default::default();
        let mut config = TokenizerConfig::preset("small-dual-ds8").unwrap();
        config.image_size = 64;
        B::seed(&device, 0);
        let model = Tokenizer::<B>::new(&config, &device).unwrap().without_feat_pred();
        // L2 + VQ losses only: no LPIPS weights exist here, and the GAN starts later in a run.
        let objective = ObjectiveConfig { perceptual_weight: 0.0, disc_start: u64::MAX, ..ObjectiveConfig::default() };
        let mut training = TokenizerTraining::new(model, objective, AdamWConfig::tokenizer(), None, &device);
        let batch = 8;
        let images = Tensor::<B, 4>::random([batch, 3, 64, 64], Distribution::Uniform(-1.0, 1.0), &device);
        let step = median_secs(5, || drop(training.train_step(images.clone()).unwrap()));
        self.record("small-dual-ds8 train step, batch 8 64x64 (img/s)", batch as f64 / step, "img/s");
    }

    fn json(&self) -> String {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("  {{\"job\": {:?}, \"value\": {}, \"unit\": {:?}}}", r.job, r.value, r.unit))
            .collect();
        format!("{{\"threads\": {}, \"rows\": [\n{}\n]}}\n", fqgan::threads::current(), rows.join(",\n"))
    }
}

fn load_tokenizer(path: &Path) -> Tokenizer<Cpu> {
    Tokenizer::<Cpu>::load(path, None, LoadPurpose::Inference, &Default::default()).unwrap()
}

fn random_images(batch: usize, size: usize) -> Tensor<Cpu, 4> {
    Tensor::random([batch, 3, size, size], Distribution::Uniform(-1.0, 1.0), &Default::default())
}

/// Seconds per token position of `batch` images from the difference of two runs that stop
/// after `short` and `long` positions: prefill and set-up cancel out, as in the script.
fn seconds_per_token(model: &Far<Cpu>, batch: usize, options: &GenerateOptions) -> f64 {
    let labels = Tensor::<Cpu, 1, Int>::arange(0..batch as i64, &model.device());
    let (short, long) = (4, 20);
    let until = |positions: usize| {
        let labels = &labels;
        move || {
            let mut stop = |done: usize, _: usize| {
                if done >= positions {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            generate_with_progress(model, labels.clone(), None, options, &mut stop).unwrap();
        }
    };
    let t_short = median_secs(3, until(short));
    let t_long = median_secs(3, until(long));
    (t_long - t_short) / (long - short) as f64
}

fn main() {
    // As the command-line tools start (`fqgan_trainer::set_up_process`).
    fqgan::malloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let threads = value("--threads").map(|t| fqgan::threads::parse(&t).expect("--threads"));
    let threads = fqgan::threads::configure(threads).expect("thread pool");
    let only = value("--only").map(|o| o.split(',').map(str::to_string).collect()).unwrap_or_default();
    println!("fqgan CPU jobs, {threads} thread(s), medians after one warm-up run");
    let mut bench = Bench { only, rows: Vec::new(), scratch: tempfile::tempdir().expect("temp dir") };
    // On the pool, as the CLI and the C library run their work (see `fqgan::threads::on_pool`).
    fqgan::threads::on_pool(|| {
        bench.tokenizer_jobs();
        bench.far_jobs();
        bench.training_jobs();
    });
    if let Some(path) = value("--json") {
        std::fs::write(&path, bench.json()).expect("writing --json");
    }
}
