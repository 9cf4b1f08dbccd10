//! Tiling images of any size at a model's native size, and blending decoded tiles back.
//!
//! Tiles of `tile` x `tile` pixels step by `tile - overlap`; the last tile in a row or column
//! is shifted back to end at the image edge, so only images smaller than a tile need padding
//! (edge pixels repeated). Each tile is coded on its own, so neighbouring decoded tiles
//! disagree near their borders, where the decoder also sees its zero padding. Decoding blends
//! overlapping tiles with weights that ramp linearly across the overlap, which turns the
//! disagreement into a smooth transition instead of a seam (`tests/fqt_tiling.rs` measures it).

use crate::error::{Error, Result};

/// Images are at most this many pixels on a side and in total: far above any texture, and
/// low enough that decoding buffers stay around a gigabyte.
pub const MAX_SIDE: u32 = 16384;
pub const MAX_PIXELS: u64 = 1 << 26;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileLayout {
    pub width: u32,
    pub height: u32,
    pub tile: u32,
    pub overlap: u32,
}

impl TileLayout {
    /// Checks the sizes; `overlap` must be below half a tile so that a pixel is covered by at
    /// most two tiles per axis.
    pub fn new(width: u32, height: u32, tile: u32, overlap: u32) -> Result<Self> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(Error::Input(format!("image size {width}x{height}: each side must be 1..={MAX_SIDE}")));
        }
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(Error::Input(format!("image size {width}x{height} exceeds {MAX_PIXELS} pixels")));
        }
        if tile < 2 || overlap >= tile / 2 {
            return Err(Error::Input(format!(
                "tile {tile} with overlap {overlap}: need tile >= 2 and overlap < tile / 2"
            )));
        }
        Ok(Self { width, height, tile, overlap })
    }

    pub fn stride(&self) -> u32 {
        self.tile - self.overlap
    }

    pub fn tiles_x(&self) -> u32 {
        self.tiles_along(self.width)
    }

    pub fn tiles_y(&self) -> u32 {
        self.tiles_along(self.height)
    }

    pub fn count(&self) -> usize {
        self.tiles_x() as usize * self.tiles_y() as usize
    }

    fn tiles_along(&self, side: u32) -> u32 {
        if side <= self.tile {
            1
        } else {
            (side - self.tile).div_ceil(self.stride()) + 1
        }
    }

    fn origin_along(&self, side: u32, i: u32) -> u32 {
        (i * self.stride()).min(side.saturating_sub(self.tile))
    }

    /// Top-left pixel of tile `index` (row-major over tiles).
    pub fn origin(&self, index: usize) -> (u32, u32) {
        let tiles_x = self.tiles_x() as usize;
        let (i, j) = ((index % tiles_x) as u32, (index / tiles_x) as u32);
        (self.origin_along(self.width, i), self.origin_along(self.height, j))
    }

    /// Blend weight of a tile's pixel at local coordinate `u` along one axis: a ramp from
    /// near 0 at the tile edge to 1 at `overlap` pixels in (never 0, so a pixel covered by
    /// one tile only keeps that tile's value).
    fn ramp(&self, u: u32) -> f32 {
        if self.overlap == 0 {
            return 1.0;
        }
        let from_edge = u.min(self.tile - 1 - u) as f32 + 0.5;
        (from_edge / self.overlap as f32).min(1.0)
    }

    /// Tile `index` of planar image data (`channels` planes of width x height), as
    /// `channels` planes of tile x tile; pixels beyond the image repeat its edge.
    pub fn extract(&self, planes: &[f32], channels: usize, index: usize) -> Vec<f32> {
        let (w, h, t) = (self.width as usize, self.height as usize, self.tile as usize);
        let (x0, y0) = self.origin(index);
        let mut out = Vec::with_capacity(channels * t * t);
        for c in 0..channels {
            let plane = &planes[c * w * h..(c + 1) * w * h];
            for v in 0..t {
                let y = (y0 as usize + v).min(h - 1);
                out.extend((0..t).map(|u| plane[y * w + (x0 as usize + u).min(w - 1)]));
            }
        }
        out
    }
}

/// Accumulates decoded tiles into a weighted average over the whole image.
pub struct Blender {
    layout: TileLayout,
    channels: usize,
    sum: Vec<f32>,
    weight: Vec<f32>,
}

impl Blender {
    pub fn new(layout: TileLayout, channels: usize) -> Self {
        let pixels = layout.width as usize * layout.height as usize;
        Self { layout, channels, sum: vec![0.0; channels * pixels], weight: vec![0.0; pixels] }
    }

    /// Adds tile `index` (`channels` planes of tile x tile); parts beyond the image are dropped.
    pub fn add(&mut self, index: usize, tile: &[f32]) {
        let l = &self.layout;
        let (w, h, t) = (l.width as usize, l.height as usize, l.tile as usize);
        assert_eq!(tile.len(), self.channels * t * t, "Blender::add: tile size");
        let (x0, y0) = l.origin(index);
        let (x0, y0) = (x0 as usize, y0 as usize);
        let (tw, th) = (t.min(w - x0), t.min(h - y0));
        let ramp: Vec<f32> = (0..t as u32).map(|u| l.ramp(u)).collect();
        for v in 0..th {
            for u in 0..tw {
                let weight = ramp[u] * ramp[v];
                let at = (y0 + v) * w + x0 + u;
                self.weight[at] += weight;
                for c in 0..self.channels {
                    self.sum[c * w * h + at] += weight * tile[c * t * t + v * t + u];
                }
            }
        }
    }

    /// The blended planes. Every pixel must have been covered by some tile.
    pub fn finish(self) -> Vec<f32> {
        let pixels = self.weight.len();
        let mut planes = self.sum;
        for (i, value) in planes.iter_mut().enumerate() {
            let weight = self.weight[i % pixels];
            assert!(weight > 0.0, "Blender::finish: pixel {} was not covered by any tile", i % pixels);
            *value /= weight;
        }
        planes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_odd_sizes_and_end_at_the_edge() {
        let layout = TileLayout::new(300, 171, 64, 8).unwrap();
        assert_eq!((layout.tiles_x(), layout.tiles_y()), (6, 3));
        assert_eq!(layout.origin(0), (0, 0));
        assert_eq!(layout.origin(1), (56, 0));
        assert_eq!(layout.origin(5), (236, 0));
        assert_eq!(layout.origin(17), (236, 107));
        let small = TileLayout::new(10, 70, 64, 8).unwrap();
        assert_eq!((small.tiles_x(), small.tiles_y(), small.origin(1)), (1, 2, (0, 6)));
        assert!(TileLayout::new(0, 5, 64, 8).is_err());
        assert!(TileLayout::new(5, 5, 64, 32).is_err());
        assert!(TileLayout::new(MAX_SIDE, MAX_SIDE, 64, 8).unwrap_err().to_string().contains("pixels"));
    }

    #[test]
    fn blending_identical_tiles_reproduces_the_image() {
        // Whatever the weights, tiles that agree must blend back to exactly the source.
        let layout = TileLayout::new(45, 30, 16, 4).unwrap();
        let planes: Vec<f32> = (0..2 * 45 * 30).map(|i| (i % 97) as f32).collect();
        let mut blender = Blender::new(layout, 2);
        for index in 0..layout.count() {
            blender.add(index, &layout.extract(&planes, 2, index));
        }
        let blended = blender.finish();
        for (a, b) in blended.iter().zip(&planes) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn overlap_blends_disagreeing_tiles_smoothly() {
        // Two tiles of constant 0 and 1: with overlap the step becomes a ramp, without it a jump.
        let step = |width, overlap| {
            let layout = TileLayout::new(width, 1, 16, overlap).unwrap();
            assert_eq!(layout.count(), 2);
            let mut blender = Blender::new(layout, 1);
            for index in 0..layout.count() {
                blender.add(index, &vec![index as f32; 16 * 16]);
            }
            let row = blender.finish();
            row.windows(2).map(|p| (p[1] - p[0]).abs()).fold(0.0f32, f32::max)
        };
        assert_eq!(step(32, 0), 1.0);
        assert!(step(26, 6) < 0.2, "largest step {}", step(26, 6));
    }
}
