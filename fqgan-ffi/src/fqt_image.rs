//! Whole images of any size to and from `.fqt` bytes in one call each: tiled, blended at the
//! seams and with alpha kept, as `fqgan compress` and `fqgan decompress` do (the core's
//! [`fqgan_core::codec::AssetCodec`]).

use std::ffi::c_void;
use std::path::Path;

use fqgan_core::codec::DEFAULT_MAX_WORK_PIXELS;
use fqgan_core::image::DynamicImage;
use fqgan_core::runtime::TileOptions;
use fqgan_core::tokens::TokenFile;

use crate::args::{arg, output, slice, versioned_copy};
use crate::fqt::FqtCoding;
use crate::generator::{cancelled, reporter, ProgressFn};
use crate::status::{guard, Failure, Outcome, Status};
use crate::tokenizer::{read_pixels, Image, PixelFormat, Tokenizer};

/// `fqgan_fqt_image_params.overlap` for the tokenizer's default overlap (an eighth of a tile,
/// as `fqgan compress` uses).
pub const FQGAN_OVERLAP_DEFAULT: u32 = u32::MAX;

/// How `fqgan_fqt_encode_image` and `fqgan_fqt_decode_image` handle a whole image. Get one
/// from `fqgan_fqt_image_params_default()`; `struct_size` follows `fqgan_generate_params`' rule.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FqtImageParams {
    pub struct_size: usize,
    /// Encoding: pixels shared by neighbouring tiles, below half a tile, or
    /// `FQGAN_OVERLAP_DEFAULT`. Decoding uses the overlap the file records.
    pub overlap: u32,
    /// Encoding: an `fqgan_fqt_coding` value (default ENTROPY, the smaller files).
    pub coding: i32,
    /// Non-zero: the image's rows run from the bottom up (Unity's `Texture2D`, OpenGL), both
    /// for the image encoded and for the pixels decoded.
    pub bottom_up: u32,
    /// The most model work one call may do, in tile pixels (tiles x tile size^2); 0 for the
    /// default, 2^24 (a 4096 x 4096 image). A few KB of `.fqt` can describe an image that would
    /// keep the model busy for hours: larger files fail with `FQGAN_STATUS_INVALID_ARGUMENT`.
    pub max_work_pixels: u64,
}

/// The tokenizer's default overlap, range coding, top row first, the default work limit.
#[no_mangle]
pub extern "C" fn fqgan_fqt_image_params_default() -> FqtImageParams {
    FqtImageParams {
        struct_size: std::mem::size_of::<FqtImageParams>(),
        overlap: FQGAN_OVERLAP_DEFAULT,
        coding: FqtCoding::Entropy as i32,
        bottom_up: 0,
        max_work_pixels: 0,
    }
}

/// Encodes an image of any size into the bytes of a `.fqt` file: cut into overlapping tiles of
/// the tokenizer's image size, each encoded, the ids stored losslessly. An RGBA8 image keeps
/// its alpha plane losslessly when any pixel is not fully opaque.
///
/// - `params`: NULL for `fqgan_fqt_image_params_default()`.
/// - `progress`, `user_data`: may be NULL; called after each batch of tiles (see
///   `fqgan_progress_fn`).
/// - `bytes`, `bytes_capacity`: the output. Its length depends on the image, so
///   `bytes_capacity` must be at least the bound a query gives: call once with `bytes = NULL,
///   bytes_capacity = 0` (nothing is encoded; `image` is read for its size and format only) and
///   `*bytes_size` receives the most bytes the file can take. On success `*bytes_size`
///   receives the bytes written.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use; `progress` must be safe to call
/// with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_fqt_encode_image(
    tokenizer: *const Tokenizer,
    image: *const Image,
    params: *const FqtImageParams,
    progress: ProgressFn,
    user_data: *mut c_void,
    bytes: *mut u8,
    bytes_capacity: usize,
    bytes_size: *mut usize,
) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        let (params, options) = image_params(params)?;
        let image = arg(image, "image")?;
        // The bound assumes alpha for RGBA8 images: whether it is kept depends on the pixels.
        let rgba = image.format == PixelFormat::Rgba8 as i32;
        let bound = tokenizer.session.fqt_bound(image.width, image.height, rgba, &options)?;
        let bound = usize::try_from(bound).map_err(|_| Failure::invalid("the image's .fqt bound passes usize"))?;
        let names = ["bytes", "bytes_capacity", "bytes_size"];
        let Some(out) = output(bytes, bytes_capacity, bound, bytes_size, names)? else {
            return Ok(());
        };
        let pixels = opaque_as_rgb(read_pixels(image, params.bottom_up != 0)?);
        let mut progress = reporter(progress, user_data);
        let file = tokenizer.session.compress(&pixels, &options, &mut progress)?.ok_or_else(cancelled)?;
        let encoded = file.to_bytes()?;
        out[..encoded.len()].copy_from_slice(&encoded);
        if !bytes_size.is_null() {
            bytes_size.write(encoded.len());
        }
        Ok(())
    })
}

/// Decodes the bytes of a `.fqt` file made with `tokenizer` into packed RGBA8 pixels of the
/// file's size (`fqgan_fqt_info.width` x `height` from `fqgan_fqt_read`), the tiles blended at
/// their seams; alpha is the file's, or 255 when it has none.
///
/// - `params`: NULL for defaults; `bottom_up` and `max_work_pixels` apply.
/// - `progress`, `user_data`: may be NULL; called after each batch of tiles.
/// - `rgba`, `rgba_capacity`, `rgba_required`: width * height * 4 bytes, with the usual size
///   query (which reads the file's header only).
///
/// Fails with `FQGAN_STATUS_INVALID_ARGUMENT` for a damaged file, one made by another model,
/// or one past `max_work_pixels`.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use; `progress` must be safe to call
/// with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_fqt_decode_image(
    tokenizer: *const Tokenizer,
    fqt: *const u8,
    fqt_size: usize,
    params: *const FqtImageParams,
    progress: ProgressFn,
    user_data: *mut c_void,
    rgba: *mut u8,
    rgba_capacity: usize,
    rgba_required: *mut usize,
) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        let (params, options) = image_params(params)?;
        let fqt = slice(fqt, fqt_size, "fqt")?;
        let source = Path::new("`fqt`");
        let header = TokenFile::read_header(fqt, source)?;
        tokenizer.session.check_header(&header, source)?;
        let (width, height) = (header.layout.width as usize, header.layout.height as usize);
        let names = ["rgba", "rgba_capacity", "rgba_required"];
        let Some(out) = output(rgba, rgba_capacity, width * height * 4, rgba_required, names)? else {
            return Ok(());
        };
        let file = TokenFile::from_bytes(fqt, source)?;
        let mut progress = reporter(progress, user_data);
        let image = tokenizer.session.decompress(&file, source, None, &options, &mut progress)?;
        let image = image.ok_or_else(cancelled)?.into_rgba8();
        for (y, row) in image.as_raw().chunks_exact(width * 4).enumerate() {
            let target = if params.bottom_up != 0 { height - 1 - y } else { y };
            out[target * width * 4..][..width * 4].copy_from_slice(row);
        }
        Ok(())
    })
}

/// The params (NULL for defaults) and what they ask of `tokenizer`'s codec.
/// The caller's params (or the defaults) and the tiling they ask for.
unsafe fn image_params(params: *const FqtImageParams) -> Outcome<(FqtImageParams, TileOptions)> {
    let defaults = fqgan_fqt_image_params_default();
    let params = if params.is_null() {
        defaults
    } else {
        let sizes = [std::mem::size_of::<FqtImageParams>()];
        versioned_copy(params, "params", &sizes, defaults, "initialise it with fqgan_fqt_image_params_default()")?
    };
    let options = TileOptions {
        overlap: (params.overlap != FQGAN_OVERLAP_DEFAULT).then_some(params.overlap),
        coding: FqtCoding::from_raw(params.coding)?,
        max_work_pixels: if params.max_work_pixels == 0 { DEFAULT_MAX_WORK_PIXELS } else { params.max_work_pixels },
    };
    Ok((params, options))
}

fn opaque_as_rgb(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgba8(rgba) if rgba.pixels().all(|p| p[3] == 255) => {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).into_rgb8())
        }
        other => other,
    }
}
