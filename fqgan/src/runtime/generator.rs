//! A loaded FAR generator behind a host-typed interface: class labels in, token grids out.

use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::token_grid::{check_ids, TokenGrid};
use super::{load_model, Arg, ModelSource, TokenizerSession};
use crate::codec::{no_progress, Progress};
use crate::device::{BackendTask, DeviceChoice};
use crate::error::{Error, Result};
use crate::far::generate::generate_ids_with_progress;
use crate::far::{Far, FarConfig, GenerateOptions, SubTokenSampling};
use crate::layers::WeightPrecision;
use crate::threads::on_pool_reporting;
use crate::weights::TensorFile;

/// What to generate: `per_label` images of each entry of `labels`.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// Class labels; `None` is the null class (unconditional generation, for generators trained
    /// with label dropout; guidance then only repeats it, so give it `cfg_scale` 1).
    pub labels: Vec<Option<usize>>,
    pub per_label: usize,
    /// One entry per sub-token, sub-token 1 first.
    pub sampling: Vec<SubTokenSampling>,
    /// The same seed, request and device give the same tokens.
    pub seed: u64,
    /// Completion: keep the top rows of these grids and generate the rest.
    pub prefix: Option<Prefix>,
}

impl GenerateRequest {
    /// One image of each label, with the same sampling for all `k` sub-tokens.
    pub fn new(labels: Vec<Option<usize>>, k: usize, sampling: SubTokenSampling, seed: u64) -> Self {
        Self { labels, per_label: 1, sampling: vec![sampling; k], seed, prefix: None }
    }

    /// The number of images: `labels.len() * per_label`.
    pub fn image_count(&self) -> Result<usize> {
        let count = self.labels.len().checked_mul(self.per_label);
        match count {
            Some(0) => Err(Error::argument(Arg::Count, "is 0: generate at least one image")),
            Some(n) => Ok(n),
            None => Err(Error::argument(Arg::Count, "overflows: generate fewer images per call")),
        }
    }
}

/// The token rows a completion keeps: the top `rows` rows of every sub-token's grid.
#[derive(Clone, Debug)]
pub struct Prefix {
    pub rows: usize,
    /// One grid for every image, or one per label (shared by that label's images). Only the
    /// kept rows are read.
    pub grids: Vec<TokenGrid>,
}

/// What a session needs from a generator, whatever its backend; `Send + Sync` as the
/// tokenizer's engine. Arguments are checked.
trait Engine: Send + Sync {
    fn config(&self) -> &FarConfig;
    /// `labels.len()` images of k x block_size ids, image-major, then sub-token-major, each
    /// continuing its `[k][positions]` ids of `prefix`; `None` when `progress` cancelled.
    fn generate(
        &self,
        labels: &[i64],
        prefix: Option<&[i64]>,
        options: &GenerateOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<Vec<u32>>>;
    fn set_weight_precision(&mut self, precision: WeightPrecision);
}

impl<B: Backend> Engine for Far<B> {
    fn config(&self) -> &FarConfig {
        Far::config(self)
    }

    fn set_weight_precision(&mut self, precision: WeightPrecision) {
        Far::set_weight_precision(self, precision)
    }

    fn generate(
        &self,
        labels: &[i64],
        prefix: Option<&[i64]>,
        options: &GenerateOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<Vec<u32>>> {
        let (batch, k, device) = (labels.len(), Far::config(self).k(), self.device());
        let positions = prefix.map_or(0, |ids| ids.len() / (batch * k));
        let prefix_tensor = prefix
            .map(|ids| Tensor::<B, 3, Int>::from_data(TensorData::new(ids.to_vec(), [batch, k, positions]), &device));
        let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(labels.to_vec(), [batch]), &device);
        let Some(generated) = generate_ids_with_progress(self, labels, prefix_tensor, options, progress)? else {
            return Ok(None);
        };
        let generated = generated.convert::<i64>().to_vec::<i64>().expect("int ids");
        let total = generated.len() / (batch * k);
        // Each sub-token's plane of each image: its prefix, then what was generated after it.
        // Sampled ids are below their vocabulary size, at most 2^24: they fit in u32.
        let planes = (0..batch * k).flat_map(|plane| {
            let kept = prefix.map_or(&[][..], |ids| &ids[plane * positions..(plane + 1) * positions]);
            kept.iter().chain(&generated[plane * total..(plane + 1) * total]).map(|&id| id as u32)
        });
        Ok(Some(planes.collect()))
    }
}

/// A generator loaded onto one device, ready for any number of calls from any threads.
pub struct GeneratorSession {
    engine: Box<dyn Engine>,
    device: DeviceChoice,
}

struct Load<'a> {
    file: &'a TensorFile,
    config: Option<&'a FarConfig>,
}

impl BackendTask for Load<'_> {
    type Output = Result<Box<dyn Engine>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        Ok(Box::new(Far::<B>::from_tensor_file(self.file, self.config, &device)?))
    }
}

impl GeneratorSession {
    /// Loads a generator onto `device`, as [`TokenizerSession::load`] does a tokenizer.
    pub fn load(source: ModelSource<'_>, config: Option<&FarConfig>, device: DeviceChoice) -> Result<Self> {
        let session = Self::load_with_progress(source, config, device, &mut no_progress)?;
        Ok(session.expect("loading without a progress callback always completes"))
    }

    /// As [`GeneratorSession::load`], with progress and cancel as
    /// [`TokenizerSession::load_with_progress`].
    pub fn load_with_progress(
        source: ModelSource<'_>,
        config: Option<&FarConfig>,
        device: DeviceChoice,
        progress: &mut Progress<'_>,
    ) -> Result<Option<Self>> {
        let (start, config) = (Instant::now(), config.filter(|_| !matches!(source, ModelSource::Builtin)));
        let build = |file: &TensorFile| device.run(Load { file, config })?;
        let Some(engine) = load_model(source, &crate::builtin::GENERATOR, progress, build)? else {
            return Ok(None);
        };
        let config = engine.config();
        log::info!(
            "loaded a generator from {source} on {device} in {:.0} ms: k = {}, {} classes, {} layers of width {}",
            start.elapsed().as_secs_f64() * 1e3,
            config.k(),
            config.num_classes,
            config.n_layer,
            config.dim,
        );
        Ok(Some(Self { engine, device }))
    }

    /// Stores the generator's matrix weights as `precision`: [`WeightPrecision::Bf16`] halves
    /// the memory and, on the CPU, about halves the time per token; the logits then differ from
    /// f32's by a few 1e-3 of the largest (see [`WeightPrecision`]).
    /// Fails on the ndarray device, which holds f32 tensors only.
    pub fn set_weight_precision(&mut self, precision: WeightPrecision) -> Result<()> {
        if precision != WeightPrecision::F32 && self.device == DeviceChoice::NdArray {
            let message = format!("is {}; the ndarray device holds f32 weights only (use cpu)", precision.name());
            return Err(Error::argument(Arg::WeightPrecision, message));
        }
        self.engine.set_weight_precision(precision);
        log::info!("generator weights stored as {}", precision.name());
        Ok(())
    }

    pub fn config(&self) -> &FarConfig {
        self.engine.config()
    }

    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    /// Ids in one generated image's [`TokenGrid`]: k x block_size.
    pub fn token_count(&self) -> usize {
        self.config().k() * self.config().block_size
    }

    /// Errors unless `tokenizer` decodes what this generator makes.
    pub fn check_tokenizer(&self, tokenizer: &TokenizerSession) -> Result<()> {
        self.config().check_tokenizer(tokenizer.config())
    }

    /// Errors naming the first argument of `request` this generator cannot honour.
    pub fn check(&self, request: &GenerateRequest) -> Result<()> {
        let config = self.config();
        if let Some(label) = request.labels.iter().find_map(|&l| l.filter(|&l| l >= config.num_classes)) {
            let message = format!("is {label}; this generator has classes 0..{}", config.num_classes);
            return Err(Error::argument(Arg::ClassId, message));
        }
        if request.labels.contains(&None) && config.null_class().is_none() {
            let message = "is the null class, which this generator lacks (trained without label dropout)";
            return Err(Error::argument(Arg::ClassId, message));
        }
        request.image_count()?;
        self.check_sampling(&request.sampling)?;
        if let Some(prefix) = &request.prefix {
            self.check_prefix(prefix, request.labels.len())?;
        }
        Ok(())
    }

    fn check_sampling(&self, sampling: &[SubTokenSampling]) -> Result<()> {
        let k = self.config().k();
        if sampling.len() != k {
            return Err(Error::Input(format!("sampling lists {} sub-tokens; this model has k = {k}", sampling.len())));
        }
        let uniform = sampling.iter().all(|s| *s == sampling[0]);
        for (j, s) in sampling.iter().enumerate() {
            let which = if uniform { String::new() } else { format!(" for sub-token {}", j + 1) };
            s.validate(&which)?;
            if s.cfg_scale != 1.0 && self.config().null_class().is_none() {
                return Err(Error::argument(
                    Arg::CfgScale,
                    format!(
                        "is {}{which}; this generator has no null class (trained without label dropout): use 1",
                        s.cfg_scale
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_prefix(&self, prefix: &Prefix, labels: usize) -> Result<()> {
        let config = self.config();
        let side = config.grid_size();
        if prefix.rows == 0 || prefix.rows >= side {
            let message = format!("is {}; keep 1..{} of the {side} token rows", prefix.rows, side - 1);
            return Err(Error::argument(Arg::PrefixRows, message));
        }
        if prefix.grids.len() != 1 && prefix.grids.len() != labels {
            return Err(Error::Input(format!(
                "the prefix has {} grids; give one for every image or one per label ({labels})",
                prefix.grids.len()
            )));
        }
        for (n, grid) in prefix.grids.iter().enumerate() {
            if grid.ids.len() != self.token_count() || grid.k != config.k() || grid.side != side {
                let message =
                    format!("is {}; one image of this generator has {} ids", grid.ids.len(), self.token_count());
                return Err(Error::argument(Arg::PrefixCount, message));
            }
            let offset = n * self.token_count();
            check_ids(&grid.ids, side, prefix.rows, &config.vocab_sizes, (Arg::Prefix, offset), |j| {
                format!("sub-token {j}")
            })?;
        }
        Ok(())
    }

    /// Generates the images of `request`: their grids, label by label; `None` when `progress`
    /// (told token positions done and in all, on the calling thread) stopped it.
    pub fn generate(&self, request: &GenerateRequest, progress: &mut Progress<'_>) -> Result<Option<Vec<TokenGrid>>> {
        self.check(request)?;
        let config = self.config();
        let null = config.null_class();
        let labels: Vec<i64> = request
            .labels
            .iter()
            .flat_map(|&label| {
                let row = label.or(null).expect("checked: the null class exists") as i64;
                std::iter::repeat_n(row, request.per_label)
            })
            .collect();
        let prefix = request.prefix.as_ref().map(|prefix| {
            let kept = prefix.rows * config.grid_size();
            let grid_of =
                |image: usize| &prefix.grids[if prefix.grids.len() == 1 { 0 } else { image / request.per_label }];
            (0..labels.len())
                .flat_map(|image| {
                    let grid = grid_of(image);
                    (0..grid.k).flat_map(move |j| grid.plane(j)[..kept].iter().map(|&id| i64::from(id)))
                })
                .collect::<Vec<i64>>()
        });
        let options = GenerateOptions::new(request.sampling.clone(), request.seed);
        let engine = &*self.engine;
        let ids =
            on_pool_reporting(progress, |progress| engine.generate(&labels, prefix.as_deref(), &options, progress))?;
        let (k, side) = (config.k(), config.grid_size());
        Ok(ids.map(|ids| {
            ids.chunks_exact(self.token_count()).map(|ids| TokenGrid { k, side, ids: ids.to_vec() }).collect()
        }))
    }
}
