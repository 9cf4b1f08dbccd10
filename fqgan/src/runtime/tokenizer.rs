//! A loaded tokenizer behind a host-typed interface: images and token grids in and out,
//! whole images of any size to and from `.fqt` files.

use std::path::Path;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::token_grid::{check_ids, TokenGrid};
use super::{load_model, Arg, ModelSource};
use crate::codec::{default_overlap, no_progress, AssetCodec, Progress, DEFAULT_MAX_WORK_PIXELS};
use crate::device::{read_back, BackendTask, DeviceChoice};
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::image::{images_to_tensor, tensor_to_images, DynamicImage, RgbImage};
use crate::threads::{on_pool, on_pool_reporting};
use crate::tiling::TileLayout;
use crate::tokenizer::{LoadPurpose, Tokenizer};
use crate::tokens::{Coding, Header, TokenFile};
use crate::weights::TensorFile;
use crate::TokenizerConfig;

/// Images per model call in [`TokenizerSession::encode`] and [`TokenizerSession::decode`]:
/// enough to keep the backend busy, few enough to bound memory whatever the caller passes.
const BATCH: usize = 8;

/// How whole images are tiled, stored and bounded (see [`crate::codec::AssetCodec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileOptions {
    /// Pixels adjacent tiles share when compressing; `None`: [`default_overlap`]. A file
    /// records its own for decompressing.
    pub overlap: Option<u32>,
    pub coding: Coding,
    /// The most model work one call may ask for, in tile pixels.
    pub max_work_pixels: u64,
}

impl Default for TileOptions {
    fn default() -> Self {
        Self { overlap: None, coding: Coding::Entropy, max_work_pixels: DEFAULT_MAX_WORK_PIXELS }
    }
}

/// What a session needs from a tokenizer, whatever its backend. `Send + Sync`: forward passes
/// only read the module, so one session serves many threads at once. Arguments are checked.
trait Engine: Send + Sync {
    fn config(&self) -> &TokenizerConfig;
    /// Same-sized images of the model's size -> their ids, image after image.
    fn encode(&self, images: &[RgbImage]) -> Result<Vec<u32>>;
    /// `images` grids of ids, back to back -> images, decoding only the sub-codebooks in `which`.
    fn decode(&self, ids: &[u32], images: usize, which: &[usize]) -> Result<Vec<RgbImage>>;
    fn compress(
        &self,
        image: &DynamicImage,
        fingerprint: Fingerprint,
        overlap: u32,
        options: &TileOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<TokenFile>>;
    fn decompress(
        &self,
        file: &TokenFile,
        fingerprint: Fingerprint,
        source: &Path,
        which: &[usize],
        options: &TileOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<DynamicImage>>;
}

impl<B: Backend> Engine for Tokenizer<B> {
    fn config(&self) -> &TokenizerConfig {
        Tokenizer::config(self)
    }

    fn encode(&self, images: &[RgbImage]) -> Result<Vec<u32>> {
        let ids = Tokenizer::encode(self, images_to_tensor::<B>(images, &self.device())?);
        // Ids come from an argmin over at most 2^24 codebook rows, so they fit in u32.
        Ok(read_back(ids).convert::<i64>().iter::<i64>().map(|id| id as u32).collect())
    }

    fn decode(&self, ids: &[u32], images: usize, which: &[usize]) -> Result<Vec<RgbImage>> {
        let (k, g) = (self.config().k(), self.config().grid_size());
        let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::<B, 4, Int>::from_data(TensorData::new(ids, [images, k, g, g]), &self.device());
        Ok(tensor_to_images(self.decode_subset(ids, which)))
    }

    fn compress(
        &self,
        image: &DynamicImage,
        fingerprint: Fingerprint,
        overlap: u32,
        options: &TileOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<TokenFile>> {
        let codec = AssetCodec::with_fingerprint(self, fingerprint, options.max_work_pixels);
        codec.compress_with_progress(image, overlap, options.coding, progress)
    }

    fn decompress(
        &self,
        file: &TokenFile,
        fingerprint: Fingerprint,
        source: &Path,
        which: &[usize],
        options: &TileOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<DynamicImage>> {
        AssetCodec::with_fingerprint(self, fingerprint, options.max_work_pixels)
            .decode_tiles(file, source, which, progress)
    }
}

/// A tokenizer loaded onto one device, ready for any number of calls from any threads.
pub struct TokenizerSession {
    engine: Box<dyn Engine>,
    /// Computed once: every `.fqt` file is compared with it.
    fingerprint: Fingerprint,
    device: DeviceChoice,
}

struct Load<'a> {
    file: &'a TensorFile,
    config: Option<&'a TokenizerConfig>,
}

impl BackendTask for Load<'_> {
    type Output = Result<(Box<dyn Engine>, Fingerprint)>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let model = Tokenizer::<B>::from_tensor_file(self.file, self.config, LoadPurpose::Inference, &device)?;
        let fingerprint = Fingerprint::of(&model);
        Ok((Box::new(model), fingerprint))
    }
}

impl TokenizerSession {
    /// Loads a tokenizer onto `device`. `config` is for files without an embedded config
    /// (converted official checkpoints); files written by fqgan carry theirs. A CUDA device
    /// without a driver is an error, not a panic.
    pub fn load(source: ModelSource<'_>, config: Option<&TokenizerConfig>, device: DeviceChoice) -> Result<Self> {
        let session = Self::load_with_progress(source, config, device, &mut no_progress)?;
        Ok(session.expect("loading without a progress callback always completes"))
    }

    /// As [`TokenizerSession::load`], telling `progress` (tensors read, tensors in all) on the
    /// calling thread as the file is read; `None` when it stopped the load.
    pub fn load_with_progress(
        source: ModelSource<'_>,
        config: Option<&TokenizerConfig>,
        device: DeviceChoice,
        progress: &mut Progress<'_>,
    ) -> Result<Option<Self>> {
        let (start, config) = (Instant::now(), config.filter(|_| !matches!(source, ModelSource::Builtin)));
        let build = |file: &TensorFile| device.run(Load { file, config })?;
        let Some((engine, fingerprint)) = load_model(source, &crate::builtin::TOKENIZER, progress, build)? else {
            return Ok(None);
        };
        let config = engine.config();
        log::info!(
            "loaded a tokenizer from {source} on {device} in {:.0} ms: k = {}, {s}x{s} px images, downsample {}",
            start.elapsed().as_secs_f64() * 1e3,
            config.k(),
            config.downsample(),
            s = config.image_size,
        );
        Ok(Some(Self { engine, fingerprint, device }))
    }

    pub fn config(&self) -> &TokenizerConfig {
        self.engine.config()
    }

    /// What `.fqt` files made with this model record.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    /// Width and height of the images [`TokenizerSession::encode`] takes: one tile.
    pub fn image_size(&self) -> u32 {
        self.config().image_size as u32
    }

    /// Ids in one image's [`TokenGrid`]: k x grid x grid.
    pub fn token_count(&self) -> usize {
        let config = self.config();
        config.k() * config.grid_size() * config.grid_size()
    }

    /// The index of the sub-codebook called `name` ("vis", "sem", ...).
    pub fn codebook_index(&self, name: &str) -> Result<usize> {
        let codebooks = &self.config().codebooks;
        codebooks.iter().position(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = codebooks.iter().map(|c| c.name.as_str()).collect();
            Error::argument(
                Arg::Codebook,
                format!("'{name}' is not a sub-codebook of this model ({})", names.join(", ")),
            )
        })
    }

    /// Images of exactly [`TokenizerSession::image_size`] -> one token grid each.
    pub fn encode(&self, images: &[RgbImage]) -> Result<Vec<TokenGrid>> {
        let size = self.image_size();
        if let Some(image) = images.iter().find(|i| i.dimensions() != (size, size)) {
            return Err(Error::argument(
                Arg::ImageSize,
                format!(
                    "is {}x{}; this tokenizer takes {size}x{size} images (resize first)",
                    image.width(),
                    image.height()
                ),
            ));
        }
        let (k, side) = (self.config().k(), self.config().grid_size());
        let ids = on_pool(|| -> Result<Vec<u32>> {
            let mut ids = Vec::with_capacity(images.len() * self.token_count());
            for batch in images.chunks(BATCH) {
                ids.extend(self.engine.encode(batch)?);
            }
            Ok(ids)
        })?;
        Ok(ids.chunks_exact(self.token_count()).map(|ids| TokenGrid { k, side, ids: ids.to_vec() }).collect())
    }

    /// Token grids -> images, with every sub-codebook.
    pub fn decode(&self, grids: &[TokenGrid]) -> Result<Vec<RgbImage>> {
        let all: Vec<usize> = (0..self.config().k()).collect();
        self.decode_codebooks(grids, &all)
    }

    /// As [`TokenizerSession::decode`], with only the sub-codebooks in `codebooks` (indices);
    /// the others are zeroed before the decoder, as in the paper's Fig. 3.
    pub fn decode_codebooks(&self, grids: &[TokenGrid], codebooks: &[usize]) -> Result<Vec<RgbImage>> {
        self.check_codebooks(codebooks)?;
        for (n, grid) in grids.iter().enumerate() {
            self.check_grid(grid, n * self.token_count())?;
        }
        on_pool(|| {
            let mut images = Vec::with_capacity(grids.len());
            for batch in grids.chunks(BATCH) {
                let ids: Vec<u32> = batch.iter().flat_map(|g| g.ids.iter().copied()).collect();
                images.extend(self.engine.decode(&ids, batch.len(), codebooks)?);
            }
            Ok(images)
        })
    }

    /// The shape and every id, naming the first bad one (counted from `offset`).
    fn check_grid(&self, grid: &TokenGrid, offset: usize) -> Result<()> {
        let config = self.config();
        let (k, g) = (config.k(), config.grid_size());
        let holds = format!("this tokenizer's grids hold {k} x {g} x {g} = {} tokens", self.token_count());
        if grid.ids.len() != self.token_count() {
            return Err(Error::argument(Arg::TokenCount, format!("is {}; {holds}", grid.ids.len())));
        }
        if (grid.k, grid.side) != (k, g) {
            let message = format!("is {} x {s} x {s}; {holds}", grid.k, s = grid.side);
            return Err(Error::argument(Arg::TokenCount, message));
        }
        let sizes: Vec<usize> = config.codebooks.iter().map(|c| c.size).collect();
        check_ids(&grid.ids, g, g, &sizes, (Arg::Token, offset), |j| {
            format!("sub-codebook {j} '{}'", config.codebooks[j].name)
        })
    }

    fn check_codebooks(&self, codebooks: &[usize]) -> Result<()> {
        let k = self.config().k();
        if codebooks.is_empty() {
            return Err(Error::argument(Arg::CodebookCount, "is 0: choose at least one sub-codebook"));
        }
        match codebooks.iter().position(|&c| c >= k) {
            Some(i) => Err(Error::argument_at(
                Arg::Codebook,
                i,
                format!("is {}; this tokenizer has {k} sub-codebooks", codebooks[i]),
            )),
            None => Ok(()),
        }
    }

    /// The tiling of a `width` x `height` image under `options`.
    fn layout(&self, width: u32, height: u32, options: &TileOptions) -> Result<TileLayout> {
        let tile = self.image_size();
        let overlap = options.overlap.unwrap_or_else(|| default_overlap(tile));
        if overlap >= tile / 2 {
            return Err(Error::argument(
                Arg::Overlap,
                format!("is {overlap}; tiles of {tile} px take an overlap below {}", tile / 2),
            ));
        }
        TileLayout::new(width, height, tile, overlap)
    }

    /// The most bytes [`TokenizerSession::compress`] can write for a `width` x `height` image
    /// (with an alpha plane when `alpha`): a buffer this large always fits the `.fqt` file.
    pub fn fqt_bound(&self, width: u32, height: u32, alpha: bool, options: &TileOptions) -> Result<u64> {
        let config = self.config();
        let layout = self.layout(width, height, options)?;
        let sizes: Vec<u32> = config.codebooks.iter().map(|c| c.size as u32).collect();
        Ok(TokenFile::max_len(&layout, config.grid_size() as u32, &sizes, alpha, options.coding))
    }

    /// Errors unless the `.fqt` file whose header this is was made by this model (for callers
    /// that size their output from the header before decoding the rest).
    pub fn check_header(&self, header: &Header, source: &Path) -> Result<()> {
        header.check_fits(self.fingerprint, self.config(), source)
    }

    /// The `.fqt` file of this model holding `tokens`, the ids of a `width` x `height` image
    /// tiled by `options` (`[tiles][k][row][column]`, tiles row by row): for tokens made
    /// elsewhere, such as generated ones. Ids are checked when the file is written.
    pub fn token_file(&self, tokens: Vec<u32>, width: u32, height: u32, options: &TileOptions) -> Result<TokenFile> {
        let config = self.config();
        let layout = self.layout(width, height, options)?;
        let per_tile = self.token_count();
        let expected = layout.count() * per_tile;
        if tokens.len() != expected {
            return Err(Error::argument(
                Arg::TokenCount,
                format!(
                    "is {}; a {width}x{height} image in {} tiles of {per_tile} ids needs {expected}",
                    tokens.len(),
                    layout.count()
                ),
            ));
        }
        Ok(TokenFile {
            fingerprint: self.fingerprint,
            layout,
            grid: config.grid_size() as u32,
            codebook_sizes: config.codebooks.iter().map(|c| c.size as u32).collect(),
            tokens,
            alpha: None,
            coding: options.coding,
        })
    }

    /// An image of any size -> a `.fqt` file, tile by tile, alpha kept losslessly; `None` when
    /// `progress` (told tiles done and in all, on the calling thread) stopped it.
    pub fn compress(
        &self,
        image: &DynamicImage,
        options: &TileOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<TokenFile>> {
        let overlap = self.layout(image.width(), image.height(), options)?.overlap;
        let engine = &*self.engine;
        on_pool_reporting(progress, |progress| engine.compress(image, self.fingerprint, overlap, options, progress))
    }

    /// A `.fqt` file made with this model (read from `source`, named in errors) -> its image,
    /// RGBA when the file has alpha, decoded with the sub-codebooks in `codebooks` (all when
    /// `None`); `None` when `progress` stopped it.
    pub fn decompress(
        &self,
        file: &TokenFile,
        source: &Path,
        codebooks: Option<&[usize]>,
        options: &TileOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Option<DynamicImage>> {
        let all: Vec<usize> = (0..self.config().k()).collect();
        let which = codebooks.unwrap_or(&all);
        self.check_codebooks(which)?;
        let engine = &*self.engine;
        on_pool_reporting(progress, |progress| {
            engine.decompress(file, self.fingerprint, source, which, options, progress)
        })
    }
}
