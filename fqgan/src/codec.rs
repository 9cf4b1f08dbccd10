//! Images of any size and channel layout <-> `.fqt` token files, through one tokenizer.
//!
//! RGB goes through the model tile by tile (see [`crate::tiling`]); alpha, which the model
//! does not see, is stored losslessly next to the tokens.

use std::ops::ControlFlow;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::device::read_back;
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::image::{rgb_from_planes, rgb_planes, DynamicImage, RgbaImage};
use crate::tiling::{Blender, TileLayout};
use crate::tokenizer::Tokenizer;
use crate::tokens::{Coding, TokenFile};

/// A tokenizer ready to compress and decompress assets.
pub struct AssetCodec<'a, B: Backend> {
    model: &'a Tokenizer<B>,
    fingerprint: Fingerprint,
    /// Tiles per model call: enough to keep the backend busy, few enough to bound memory.
    pub batch: usize,
    /// The most model work one compress or decompress may ask for, in tile pixels (tiles x
    /// tile size^2): a few KB of PNG or `.fqt` can describe an image that would keep the model
    /// busy for hours. Default [`DEFAULT_MAX_WORK_PIXELS`].
    pub max_work_pixels: u64,
}

/// The overlap of tiles of `tile` pixels when the caller names none: an eighth of a tile, one
/// token row at downsample 8 on the small presets, and enough ramp for the blend to hide tile
/// borders (`tests/fqt_tiling.rs`).
pub fn default_overlap(tile: u32) -> u32 {
    tile / 8
}

/// Told `(steps done, steps in all)` as long work advances (tiles here; tensors when loading,
/// token positions when generating); `ControlFlow::Break(())` stops the work, and the call
/// returns `Ok(None)`.
pub type Progress<'p> = dyn FnMut(usize, usize) -> ControlFlow<()> + 'p;

/// The progress of a caller that does not watch: never stops the work.
pub fn no_progress(_: usize, _: usize) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// 2^24 tile pixels: a 4096 x 4096 image without overlap (seconds to a few minutes on a CPU).
pub const DEFAULT_MAX_WORK_PIXELS: u64 = 1 << 24;

impl<'a, B: Backend> AssetCodec<'a, B> {
    pub fn new(model: &'a Tokenizer<B>) -> Self {
        Self { model, fingerprint: Fingerprint::of(model), batch: 8, max_work_pixels: DEFAULT_MAX_WORK_PIXELS }
    }

    /// As [`AssetCodec::new`], for a caller that computed the model's fingerprint once.
    pub(crate) fn with_fingerprint(model: &'a Tokenizer<B>, fingerprint: Fingerprint, max_work_pixels: u64) -> Self {
        Self { model, fingerprint, batch: 8, max_work_pixels }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The model's image size: every tile is this many pixels on a side.
    pub fn tile(&self) -> u32 {
        self.model.config().image_size as u32
    }

    /// See [`default_overlap`].
    pub fn default_overlap(&self) -> u32 {
        default_overlap(self.tile())
    }

    pub fn compress(&self, image: &DynamicImage, overlap: u32, coding: Coding) -> Result<TokenFile> {
        let file = self.compress_with_progress(image, overlap, coding, &mut no_progress)?;
        Ok(file.expect("compression without a progress callback always completes"))
    }

    /// As [`AssetCodec::compress`], reporting each batch of tiles to `progress`, which can stop it.
    pub fn compress_with_progress(
        &self,
        image: &DynamicImage,
        overlap: u32,
        coding: Coding,
        progress: &mut Progress<'_>,
    ) -> Result<Option<TokenFile>> {
        let config = self.model.config();
        let layout = TileLayout::new(image.width(), image.height(), self.tile(), overlap)?;
        self.check_work(&layout, Path::new("the image"))?;
        let planes = rgb_planes(&image.to_rgb8());
        let (t, device) = (layout.tile as usize, self.model.device());
        let mut tokens = Vec::new();
        for first in (0..layout.count()).step_by(self.batch) {
            let tiles: Vec<usize> = (first..layout.count().min(first + self.batch)).collect();
            let values: Vec<f32> = tiles.iter().flat_map(|&i| layout.extract(&planes, 3, i)).collect();
            let input = Tensor::<B, 4>::from_data(TensorData::new(values, [tiles.len(), 3, t, t]), &device);
            let ids = read_back(self.model.encode(input)).convert::<i64>();
            tokens.extend(ids.iter::<i64>().map(|id| id as u32));
            if progress(first + tiles.len(), layout.count()).is_break() {
                return Ok(None);
            }
        }
        let alpha = image.color().has_alpha().then(|| image.to_rgba8().pixels().map(|p| p[3]).collect());
        Ok(Some(TokenFile {
            fingerprint: self.fingerprint,
            layout,
            grid: config.grid_size() as u32,
            codebook_sizes: config.codebooks.iter().map(|c| c.size as u32).collect(),
            tokens,
            alpha,
            coding,
        }))
    }

    /// Errors when `layout` asks for more than [`AssetCodec::max_work_pixels`].
    fn check_work(&self, layout: &TileLayout, source: &Path) -> Result<()> {
        let work = layout.count() as u64 * u64::from(layout.tile).pow(2);
        if work > self.max_work_pixels {
            return Err(crate::Error::Input(format!(
                "{}: a {}x{} image is {} tiles of {} px, {work} pixels of model work, more than the limit of {} \
                 (raise it with --max-pixels)",
                source.display(),
                layout.width,
                layout.height,
                layout.count(),
                layout.tile,
                self.max_work_pixels
            )));
        }
        Ok(())
    }

    /// Decodes `file` (read from `source`, named in errors) to RGB, or RGBA when it has alpha.
    pub fn decompress(&self, file: &TokenFile, source: &Path) -> Result<DynamicImage> {
        let image = self.decompress_with_progress(file, source, &mut no_progress)?;
        Ok(image.expect("decompression without a progress callback always completes"))
    }

    /// As [`AssetCodec::decompress`], reporting each batch of tiles to `progress`, which can
    /// stop it.
    pub fn decompress_with_progress(
        &self,
        file: &TokenFile,
        source: &Path,
        progress: &mut Progress<'_>,
    ) -> Result<Option<DynamicImage>> {
        let all: Vec<usize> = (0..file.k()).collect();
        self.decode_tiles(file, source, &all, progress)
    }

    /// As [`AssetCodec::decompress`], from the sub-codebooks `codebooks` alone (indices into the
    /// model's codebooks; the others are zeroed, as in the paper's Fig. 3).
    pub fn decompress_codebooks(&self, file: &TokenFile, source: &Path, codebooks: &[usize]) -> Result<DynamicImage> {
        let image = self.decode_tiles(file, source, codebooks, &mut no_progress)?;
        Ok(image.expect("decompression without a progress callback always completes"))
    }

    /// Decodes `file` with the sub-codebooks `codebooks`, reporting each batch of tiles.
    pub(crate) fn decode_tiles(
        &self,
        file: &TokenFile,
        source: &Path,
        codebooks: &[usize],
        progress: &mut Progress<'_>,
    ) -> Result<Option<DynamicImage>> {
        file.check_fits(self.fingerprint, self.model.config(), source)?;
        self.check_work(&file.layout, source)?;
        let layout = file.layout;
        let (t, g, k, device) = (layout.tile as usize, file.grid as usize, file.k(), self.model.device());
        let mut blender = Blender::new(layout, 3);
        let per_tile = file.tokens_per_tile();
        for first in (0..layout.count()).step_by(self.batch) {
            let tiles = first..layout.count().min(first + self.batch);
            let ids: Vec<i64> =
                file.tokens[tiles.start * per_tile..tiles.end * per_tile].iter().map(|&id| i64::from(id)).collect();
            let ids = Tensor::<B, 4, Int>::from_data(TensorData::new(ids, [tiles.len(), k, g, g]), &device);
            let decoded: Vec<f32> =
                read_back(self.model.decode_subset(ids, codebooks)).convert::<f32>().to_vec().expect("f32 data");
            let done = tiles.end;
            for (n, index) in tiles.enumerate() {
                blender.add(index, &decoded[n * 3 * t * t..(n + 1) * 3 * t * t]);
            }
            if progress(done, layout.count()).is_break() {
                return Ok(None);
            }
        }
        let rgb = rgb_from_planes(&blender.finish(), layout.width, layout.height);
        Ok(Some(match &file.alpha {
            None => DynamicImage::ImageRgb8(rgb),
            Some(alpha) => DynamicImage::ImageRgba8(RgbaImage::from_fn(layout.width, layout.height, |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0;
                image::Rgba([r, g, b, alpha[(y * layout.width + x) as usize]])
            })),
        }))
    }
}
