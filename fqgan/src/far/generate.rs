//! Class-conditional generation (official `generate_fq`): the backbone runs once per token
//! with its KV caches (`prefill`, then `decode_one_token`), and for each token the factorized
//! head runs k short steps, sampling sub-token j with its own guidance, temperature, top-k
//! and top-p, and feeding it to the next slot.
//!
//! Classifier-free guidance doubles the batch: rows `[0, B)` carry the labels and rows
//! `[B, 2B)` the null class; every sampled sub-token is fed to both halves.

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::model::Far;
use super::sample::{Sampler, SubTokenSampling};
use crate::codec::no_progress;
use crate::device::read_back;
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// One entry per sub-token, sub-token 1 first.
    pub sampling: Vec<SubTokenSampling>,
    pub seed: u64,
}

impl GenerateOptions {
    /// One sampling per sub-token.
    pub fn new(sampling: Vec<SubTokenSampling>, seed: u64) -> Self {
        Self { sampling, seed }
    }

    /// The same sampling for all `k` sub-tokens.
    pub fn uniform(k: usize, sampling: SubTokenSampling, seed: u64) -> Self {
        Self::new(vec![sampling; k], seed)
    }
}

/// What the sampler saw for one sub-token of one generated position.
pub struct LogitsRecord<B: Backend> {
    /// Index of the generated position (prefix tokens included).
    pub position: usize,
    /// 0-based sub-token.
    pub sub_token: usize,
    /// Head output, `[2B, vocab]` (conditional rows first) with guidance, else `[B, vocab]`.
    pub raw: Tensor<B, 2>,
    /// Logits after guidance, `[B, vocab]`, before temperature and filtering.
    pub guided: Tensor<B, 2>,
}

/// Generates the tokens of `labels.len()` images: `[B, k, block_size]`, starting with
/// `prefix` `[B, k, P]` when given.
/// The most memory the key/value caches of one generation call may take (FAR-B: 16 images
/// with guidance take ~1.6 GiB).
pub const MAX_GENERATION_CACHE_BYTES: u128 = 4 << 30;

pub fn generate<B: Backend>(
    model: &Far<B>,
    labels: Tensor<B, 1, Int>,
    prefix: Option<Tensor<B, 3, Int>>,
    options: &GenerateOptions,
) -> Result<Tensor<B, 3, Int>> {
    generate_observed(model, labels, prefix, options, &mut |_| {})
}

/// As [`generate`], handing every sub-token's logits to `observe` (for parity checks).
pub fn generate_observed<B: Backend>(
    model: &Far<B>,
    labels: Tensor<B, 1, Int>,
    prefix: Option<Tensor<B, 3, Int>>,
    options: &GenerateOptions,
    observe: &mut dyn FnMut(LogitsRecord<B>),
) -> Result<Tensor<B, 3, Int>> {
    let generated = run(model, labels, prefix.clone(), options, observe, &mut no_progress)?;
    Ok(after_prefix(model, prefix, generated.expect("generation without a progress callback always completes")))
}

/// As [`generate`], calling `progress(done, total)` after each generated token position
/// (`total` = positions after the prefix, `done` = 1..=total). Returning
/// `ControlFlow::Break(())` stops generation at once: the result is then `Ok(None)`.
pub fn generate_with_progress<B: Backend>(
    model: &Far<B>,
    labels: Tensor<B, 1, Int>,
    prefix: Option<Tensor<B, 3, Int>>,
    options: &GenerateOptions,
    progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<Option<Tensor<B, 3, Int>>> {
    let generated = generate_ids_with_progress(model, labels, prefix.clone(), options, progress)?;
    Ok(generated.map(|generated| after_prefix(model, prefix, generated)))
}

/// As [`generate_with_progress`], returning only the generated ids, on the host: `[B, k, P]`
/// for the P positions after the prefix.
pub(crate) fn generate_ids_with_progress<B: Backend>(
    model: &Far<B>,
    labels: Tensor<B, 1, Int>,
    prefix: Option<Tensor<B, 3, Int>>,
    options: &GenerateOptions,
    progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<Option<TensorData>> {
    run(model, labels, prefix, options, &mut |_| {}, progress)
}

/// `[prefix, generated]` along the positions.
fn after_prefix<B: Backend>(model: &Far<B>, prefix: Option<Tensor<B, 3, Int>>, generated: TensorData) -> Tensor<B, 3, Int> {
    let generated = Tensor::from_data(generated, &model.device());
    match prefix {
        Some(prefix) => Tensor::cat(vec![prefix, generated], 2),
        None => generated,
    }
}

fn run<B: Backend>(
    model: &Far<B>,
    labels: Tensor<B, 1, Int>,
    prefix: Option<Tensor<B, 3, Int>>,
    options: &GenerateOptions,
    observe: &mut dyn FnMut(LogitsRecord<B>),
    progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<Option<TensorData>> {
    let config = model.config();
    if options.sampling.len() != config.k() {
        return Err(Error::Input(format!(
            "sampling lists {} sub-tokens; this model has k = {}",
            options.sampling.len(),
            config.k()
        )));
    }
    for (j, sampling) in options.sampling.iter().enumerate() {
        sampling.validate(&format!(" for sub-token {}", j + 1))?;
    }
    let batch = labels.dims()[0];
    if let Some(prefix) = &prefix {
        let [rows, k, positions] = prefix.dims();
        if rows != batch || k != config.k() || positions >= config.block_size {
            return Err(Error::Input(format!(
                "prefix is [{rows}, {k}, {positions}]; these labels take [{batch}, {}, 0..{}]",
                config.k(),
                config.block_size
            )));
        }
    }
    let guided = options.sampling.iter().any(|s| s.cfg_scale != 1.0);
    let rows_needed = batch * (1 + usize::from(guided));
    let cache_bytes = config.kv_cache_bytes(rows_needed);
    if cache_bytes > MAX_GENERATION_CACHE_BYTES {
        return Err(Error::Input(format!(
            "generating {batch} images at once{} needs {} MiB of key/value caches, more than the limit of {} MiB: \
             generate in smaller batches",
            if guided { " with guidance (two rows each)" } else { "" },
            cache_bytes >> 20,
            MAX_GENERATION_CACHE_BYTES >> 20
        )));
    }
    let row_labels = if guided { with_null_class(model, labels)? } else { labels };
    let rows = Rows { batch, guided };
    let start = prefix.as_ref().map_or(0, |p| p.dims()[2]);
    let (k, total) = (config.k(), config.block_size - start);
    let mut generated = vec![0i64; batch * k * total];
    let mut caches = model.new_caches(rows.count());
    let mut h = model.prefill(row_labels, prefix.map(|p| rows.double(p)), &mut caches);
    let mut sampler = Sampler::new(options.seed);
    for step in 0..total {
        let token = sample_token(model, h, start + step, rows, options, &mut sampler, observe);
        // The one read per token: it keeps progress and cancel in step with the device.
        let ids = read_back(token.clone()).convert::<i64>().to_vec::<i64>().expect("int ids");
        for (row, &id) in ids.iter().enumerate() {
            generated[row * total + step] = id;
        }
        if progress(step + 1, total).is_break() {
            return Ok(None);
        }
        if step + 1 == total {
            break;
        }
        h = model.decode_one_token(rows.double(token), &mut caches);
    }
    Ok(Some(TensorData::new(generated, [batch, k, total])))
}

/// The batch layout: B rows, or `[cond; uncond]` 2B rows with guidance.
#[derive(Clone, Copy)]
struct Rows {
    batch: usize,
    guided: bool,
}

impl Rows {
    fn count(self) -> usize {
        self.batch * (1 + usize::from(self.guided))
    }

    /// Feeds the same tokens to the conditional and unconditional halves.
    fn double<B: Backend, const D: usize>(self, x: Tensor<B, D, Int>) -> Tensor<B, D, Int> {
        if self.guided {
            Tensor::cat(vec![x.clone(), x], 0)
        } else {
            x
        }
    }
}

/// Runs the factorized head for one position from its backbone state `h` `[rows, 1, dim]`
/// and returns the k sampled sub-tokens, `[B, k, 1]`.
fn sample_token<B: Backend>(
    model: &Far<B>,
    h: Tensor<B, 3>,
    position: usize,
    rows: Rows,
    options: &GenerateOptions,
    sampler: &mut Sampler,
    observe: &mut dyn FnMut(LogitsRecord<B>),
) -> Tensor<B, 3, Int> {
    let config = model.config();
    let device = model.device();
    // The head's caches live for one position only, as the official code re-creates them.
    let mut head_caches = model.head.new_caches(config, rows.count(), &device);
    let mut slot = h;
    let mut sampled = Vec::with_capacity(config.k());
    for (j, params) in options.sampling.iter().enumerate() {
        let raw = model.head_logits(slot.clone(), j, Some(&mut head_caches));
        let guided = if rows.guided { guide(raw.clone(), params.cfg_scale) } else { raw.clone() };
        let ids = sampler.sample(guided.clone(), params);
        observe(LogitsRecord { position, sub_token: j, raw, guided });
        if j + 1 < config.k() {
            slot = model.slot_embedding(j + 1, rows.double(ids.clone()));
        }
        sampled.push(ids);
    }
    Tensor::stack(sampled, 1)
}

/// `[labels; null class]`: the row layout of classifier-free guidance.
pub fn with_null_class<B: Backend>(model: &Far<B>, labels: Tensor<B, 1, Int>) -> Result<Tensor<B, 1, Int>> {
    let null = model.config().null_class().ok_or_else(|| {
        Error::Input(
            "classifier-free guidance needs the null class, but class_dropout_prob is 0: set every cfg_scale to 1"
                .into(),
        )
    })?;
    let batch = labels.dims()[0];
    let nulls = Tensor::full([batch], null as i64, &labels.device());
    Ok(Tensor::cat(vec![labels, nulls], 0))
}

/// `uncond + (cond - uncond) * scale` from head logits `[cond; uncond]` `[2B, vocab]`.
pub fn guide<B: Backend>(raw: Tensor<B, 2>, scale: f64) -> Tensor<B, 2> {
    let batch = raw.dims()[0] / 2;
    let cond = raw.clone().narrow(0, 0, batch);
    if scale == 1.0 {
        return cond;
    }
    let uncond = raw.narrow(0, batch, batch);
    uncond.clone() + (cond - uncond) * scale
}
