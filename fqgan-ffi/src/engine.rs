//! The backend-erased models behind the `fqgan_tokenizer` and `fqgan_generator` handles.
//!
//! The backend (Flex, NdArray or CUDA) is chosen once, when a model loads, through
//! [`DeviceChoice::run`]; afterwards the handle talks to the model through [`Engine`] or
//! [`GeneratorEngine`], so no call has to dispatch again and CUDA's driver probe happens in
//! exactly one place.

use std::ops::ControlFlow;
use std::path::Path;

use fqgan_core::burn::tensor::backend::Backend;
use fqgan_core::burn::tensor::{Int, Tensor, TensorData};
use fqgan_core::codec::{AssetCodec, Progress};
use fqgan_core::device::BackendTask;
use fqgan_core::far::{generate_with_progress, Far, FarConfig, GenerateOptions};
use fqgan_core::fingerprint::Fingerprint;
use fqgan_core::image::{images_to_tensor, tensor_to_images, DynamicImage, RgbImage};
use fqgan_core::threads::{on_pool, on_pool_reporting};
use fqgan_core::tokenizer::LoadPurpose;
use fqgan_core::tokens::{Coding, TokenFile};
use fqgan_core::{DeviceChoice, Result, Tokenizer, TokenizerConfig};

/// What the C API needs from a tokenizer, whatever its backend. `Send + Sync` because one
/// handle serves many threads at once: forward passes only read the module.
pub(crate) trait Engine: Send + Sync {
    fn config(&self) -> &TokenizerConfig;
    /// What `.fqt` files made with this model record.
    fn fingerprint(&self) -> Fingerprint;
    /// One image of the model's size -> k x g x g ids, sub-codebook-major, row-major.
    fn encode(&self, image: &RgbImage) -> Result<Vec<u32>>;
    /// k x g x g ids -> one image, decoding with only the sub-codebooks in `which`.
    fn decode(&self, tokens: &[u32], which: &[usize]) -> Result<RgbImage>;
    /// An image of any size -> a `.fqt` file, tile by tile (`None` when `progress` cancelled).
    fn compress(
        &self,
        image: &DynamicImage,
        work: &WholeImage,
        progress: &mut Progress<'_>,
    ) -> Result<Option<TokenFile>>;
    /// A `.fqt` file made with this model -> its image, RGBA when the file has alpha.
    fn decompress(
        &self,
        file: &TokenFile,
        work: &WholeImage,
        progress: &mut Progress<'_>,
    ) -> Result<Option<DynamicImage>>;
}

/// How whole images are tiled and bounded (see [`AssetCodec`]).
pub(crate) struct WholeImage {
    /// Tile overlap for compressing (a file records its own).
    pub overlap: u32,
    pub coding: Coding,
    pub max_work_pixels: u64,
}

impl WholeImage {
    fn codec<'a, B: Backend>(&self, model: &'a Tokenizer<B>) -> AssetCodec<'a, B> {
        let mut codec = AssetCodec::new(model);
        codec.max_work_pixels = self.max_work_pixels;
        codec
    }
}

impl<B: Backend> Engine for Tokenizer<B> {
    fn config(&self) -> &TokenizerConfig {
        Tokenizer::config(self)
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self)
    }

    fn encode(&self, image: &RgbImage) -> Result<Vec<u32>> {
        on_pool(|| {
            let input = images_to_tensor::<B>(std::slice::from_ref(image), &self.device())?;
            let ids = Tokenizer::encode(self, input)?.into_data().convert::<i64>();
            // Ids come from an argmin over at most 2^24 codebook rows, so they fit in u32.
            Ok(ids.iter::<i64>().map(|id| id as u32).collect())
        })
    }

    fn decode(&self, tokens: &[u32], which: &[usize]) -> Result<RgbImage> {
        on_pool(|| {
            let config = Tokenizer::config(self);
            let g = config.grid_size();
            let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
            let ids = Tensor::<B, 4, Int>::from_data(TensorData::new(ids, [1, config.k(), g, g]), &self.device());
            let image = self.decode_subset(ids, which)?;
            Ok(tensor_to_images(image).remove(0))
        })
    }

    fn compress(
        &self,
        image: &DynamicImage,
        work: &WholeImage,
        progress: &mut Progress<'_>,
    ) -> Result<Option<TokenFile>> {
        on_pool_reporting(progress, |progress| {
            work.codec(self).compress_with_progress(image, work.overlap, work.coding, progress)
        })
    }

    fn decompress(
        &self,
        file: &TokenFile,
        work: &WholeImage,
        progress: &mut Progress<'_>,
    ) -> Result<Option<DynamicImage>> {
        on_pool_reporting(progress, |progress| {
            work.codec(self).decompress_with_progress(file, Path::new("the .fqt bytes"), progress)
        })
    }
}

/// What the C API needs from a FAR generator, whatever its backend; `Send + Sync` as [`Engine`].
pub(crate) trait GeneratorEngine: Send + Sync {
    fn config(&self) -> &FarConfig;
    /// `labels.len()` images of k x block_size ids, image-major, then sub-token-major, then in
    /// raster order, each continuing `prefix` (`[k][positions]` ids) when given; `None` when
    /// `progress` cancelled.
    fn generate(
        &self,
        labels: &[i64],
        prefix: Option<&[i64]>,
        options: &GenerateOptions,
        progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Option<Vec<u32>>>;
}

impl<B: Backend> GeneratorEngine for Far<B> {
    fn config(&self) -> &FarConfig {
        Far::config(self)
    }

    fn generate(
        &self,
        labels: &[i64],
        prefix: Option<&[i64]>,
        options: &GenerateOptions,
        progress: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Option<Vec<u32>>> {
        let (batch, k, device) = (labels.len(), Far::config(self).k(), self.device());
        let prefix = prefix.map(|ids| {
            let ids: Vec<i64> = ids.iter().copied().cycle().take(ids.len() * batch).collect();
            let positions = ids.len() / (batch * k);
            Tensor::<B, 3, Int>::from_data(TensorData::new(ids, [batch, k, positions]), &device)
        });
        on_pool_reporting(progress, |progress| {
            let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(labels.to_vec(), [batch]), &device);
            let Some(tokens) = generate_with_progress(self, labels, prefix, options, progress)? else {
                return Ok(None);
            };
            // Sampled ids are below their vocabulary size, at most 2^24: they fit in u32.
            Ok(Some(tokens.into_data().convert::<i64>().iter::<i64>().map(|id| id as u32).collect()))
        })
    }
}

/// Where a model's bytes come from.
pub(crate) enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
    /// The model compiled into the library (`fqgan_core::builtin`).
    Builtin,
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Memory(bytes) => write!(f, "{} bytes of memory", bytes.len()),
            Source::Builtin => write!(f, "the built-in model"),
        }
    }
}

struct Load<'a>(Source<'a>);

impl BackendTask for Load<'_> {
    type Output = Result<Box<dyn Engine>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let purpose = LoadPurpose::Inference;
        let model = match self.0 {
            Source::File(path) => Tokenizer::<B>::load(path, None, purpose, &device)?,
            Source::Memory(bytes) => Tokenizer::<B>::load_from_bytes(bytes, None, purpose, &device)?,
            Source::Builtin => fqgan_core::builtin::tokenizer::<B>(purpose, &device)?,
        };
        Ok(Box::new(model))
    }
}

/// Loads a tokenizer onto `device`; a CUDA device without a driver is an error, not a panic.
pub(crate) fn load(source: Source<'_>, device: DeviceChoice) -> Result<Box<dyn Engine>> {
    fqgan_core::threads::configure(None)?;
    let (start, from) = (std::time::Instant::now(), source.to_string());
    let engine = device.run(Load(source))??;
    let config = engine.config();
    log::info!(
        "loaded a tokenizer from {from} on {device} in {:.0} ms: k = {}, {s}x{s} px images, downsample {}",
        start.elapsed().as_secs_f64() * 1e3,
        config.k(),
        config.downsample(),
        s = config.image_size,
    );
    Ok(engine)
}

struct LoadGenerator<'a>(Source<'a>);

impl BackendTask for LoadGenerator<'_> {
    type Output = Result<Box<dyn GeneratorEngine>>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let model = match self.0 {
            Source::File(path) => Far::<B>::load(path, None, &device)?,
            Source::Memory(bytes) => Far::<B>::load_from_bytes(bytes, None, &device)?,
            Source::Builtin => fqgan_core::builtin::generator::<B>(&device)?,
        };
        Ok(Box::new(model))
    }
}

/// Loads a FAR generator onto `device`, as [`load`] does a tokenizer.
pub(crate) fn load_generator(source: Source<'_>, device: DeviceChoice) -> Result<Box<dyn GeneratorEngine>> {
    fqgan_core::threads::configure(None)?;
    let (start, from) = (std::time::Instant::now(), source.to_string());
    let engine = device.run(LoadGenerator(source))??;
    let config = engine.config();
    log::info!(
        "loaded a generator from {from} on {device} in {:.0} ms: k = {}, {} classes, {} layers of width {}",
        start.elapsed().as_secs_f64() * 1e3,
        config.k(),
        config.num_classes,
        config.n_layer,
        config.dim,
    );
    Ok(engine)
}
