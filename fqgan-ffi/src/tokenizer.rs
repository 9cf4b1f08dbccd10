//! `fqgan_tokenizer`: load, inspect, encode images to token grids, decode them back.

use std::ffi::{c_char, c_void, CString};
use std::path::Path;

use fqgan_core::image::{DynamicImage, RgbImage, RgbaImage};
use fqgan_core::runtime::{ModelSource, TokenGrid, TokenizerSession};
use fqgan_core::DeviceChoice;

use crate::args::{arg, device, handle_out, output, slice, string, versioned, write_versioned};
use crate::generator::{cancelled, reporter, ProgressFn};
use crate::status::{c_u32, guard, Failure, Outcome, Status};

/// A loaded tokenizer. Create it with `fqgan_tokenizer_load_file`,
/// `fqgan_tokenizer_load_memory` or `fqgan_tokenizer_load_builtin`, release it with
/// `fqgan_tokenizer_free`.
///
/// Thread safety: every call that takes a `const fqgan_tokenizer*` may run on many threads
/// at once with the same handle. `fqgan_tokenizer_free` must not overlap any other call on
/// that handle.
pub struct Tokenizer {
    pub(crate) session: TokenizerSession,
    device: CString,
    /// NUL-terminated copies of the sub-codebook names, lent out by `fqgan_tokenizer_get_codebook`.
    codebook_names: Vec<CString>,
}

/// How to load a tokenizer. Get one from `fqgan_tokenizer_params_default()` and change the
/// fields you need: later versions may append fields, which `struct_size` accounts for.
#[repr(C)]
pub struct TokenizerParams {
    /// `sizeof(fqgan_tokenizer_params)` as the caller was compiled with.
    pub struct_size: usize,
    /// "cpu" (default; burn's Flex backend), "ndarray", "cuda" (= "cuda:0"), "cuda:N", or
    /// "auto": the first CUDA device when there is one, else "cpu" (the reason goes to the log;
    /// `fqgan_tokenizer_info.device` names the choice). NULL means "cpu". CUDA needs a library
    /// built with the `cuda` feature and a driver; without them loading fails with
    /// `FQGAN_STATUS_DEVICE`. `fqgan_device_name` lists the devices. Read only during the load.
    pub device: *const c_char,
}

/// What a tokenizer takes and produces. Set `struct_size = sizeof(fqgan_tokenizer_info)`
/// before calling `fqgan_tokenizer_get_info`.
#[repr(C)]
pub struct TokenizerInfo {
    /// In: the caller's `sizeof(fqgan_tokenizer_info)`. Out: the bytes this library filled.
    pub struct_size: usize,
    /// k, the number of sub-codebooks (2 for FQGAN-Dual, 3 for FQGAN-Triple).
    pub codebook_count: u32,
    /// Width and height of the images `fqgan_tokenizer_encode` takes and decoding produces.
    pub image_width: u32,
    pub image_height: u32,
    /// Width and height of each sub-codebook's token grid (image size / downsample).
    pub grid_width: u32,
    pub grid_height: u32,
    /// Image pixels per token along each side (8 or 16).
    pub downsample: u32,
    /// Values in one token grid: codebook_count * grid_height * grid_width.
    pub token_count: usize,
    /// Bytes of one decoded RGBA8 image: image_width * image_height * 4.
    pub rgba_size: usize,
    /// The device the model runs on, as in `fqgan_tokenizer_params.device` ("cpu", "cuda:0",
    /// ...). Owned by the tokenizer: valid until `fqgan_tokenizer_free`.
    pub device: *const c_char,
}

/// One sub-codebook. Set `struct_size = sizeof(fqgan_codebook_info)` before calling
/// `fqgan_tokenizer_get_codebook`.
#[repr(C)]
pub struct CodebookInfo {
    /// In: the caller's `sizeof(fqgan_codebook_info)`. Out: the bytes this library filled.
    pub struct_size: usize,
    /// Its name in the model file: "vis" (visual), "sem" (semantic) for Dual; "vis",
    /// "sem_mid", "sem_high" for Triple. Owned by the tokenizer: valid until `fqgan_tokenizer_free`.
    pub name: *const c_char,
    /// Number of entries: its token ids are 0 .. size - 1.
    pub size: u32,
    /// Length of each entry's vector.
    pub dim: u32,
}

/// Layout of the pixels in an `fqgan_image`.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// 4 bytes per pixel: red, green, blue, alpha. Alpha is ignored by encoding.
    Rgba8 = 0,
    /// 3 bytes per pixel: red, green, blue.
    Rgb8 = 1,
}

impl PixelFormat {
    fn from_raw(value: i32) -> Option<Self> {
        [Self::Rgba8, Self::Rgb8].into_iter().find(|f| *f as i32 == value)
    }

    fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Rgba8 => 4,
            Self::Rgb8 => 3,
        }
    }
}

/// A read-only view of 8-bit sRGB pixels, top row first. Rows may be padded (`stride`).
#[repr(C)]
pub struct Image {
    pub pixels: *const u8,
    pub width: u32,
    pub height: u32,
    /// Bytes from the start of one row to the start of the next: at least width times the
    /// bytes per pixel. The last row needs only width times the bytes per pixel.
    pub stride: usize,
    /// An `fqgan_pixel_format` value.
    pub format: i32,
}

/// The parameters `fqgan_tokenizer_load_*` use when given NULL: the CPU device.
#[no_mangle]
pub extern "C" fn fqgan_tokenizer_params_default() -> TokenizerParams {
    TokenizerParams { struct_size: std::mem::size_of::<TokenizerParams>(), device: c"cpu".as_ptr() }
}

/// Loads a tokenizer from a `.safetensors` file written by fqgan (the model's config is
/// embedded in it). Official checkpoints carry no config: convert them once with
/// `fqgan-trainer import --preset dual-ds16 --inference WEIGHTS -o TOKENIZER` (see its --help).
/// Training-only parts in the file (feature-prediction heads) are skipped.
///
/// - `path`: NUL-terminated UTF-8 path.
/// - `params`: NULL for defaults (CPU).
/// - `out_tokenizer`: receives the new handle; set to NULL on failure.
///
/// Fails with `FQGAN_STATUS_IO` when the file cannot be read, `FQGAN_STATUS_INVALID_MODEL`
/// when it is not a valid tokenizer, `FQGAN_STATUS_DEVICE` when the device is unusable.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_load_file(
    path: *const c_char,
    params: *const TokenizerParams,
    out_tokenizer: *mut *mut Tokenizer,
) -> Status {
    fqgan_tokenizer_load_file_with_progress(path, params, None, std::ptr::null_mut(), out_tokenizer)
}

/// As `fqgan_tokenizer_load_file`, from the bytes of such a file (for engines that pack their
/// assets). The bytes are copied: the buffer may be released when the call returns.
///
/// # Safety
/// `data` must be NULL or valid for `size` reads; other pointers as in `fqgan_tokenizer_load_file`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_load_memory(
    data: *const c_void,
    size: usize,
    params: *const TokenizerParams,
    out_tokenizer: *mut *mut Tokenizer,
) -> Status {
    fqgan_tokenizer_load_memory_with_progress(data, size, params, None, std::ptr::null_mut(), out_tokenizer)
}

/// Loads the tokenizer compiled into the library: a texture tokenizer trained on the ufoai game
/// textures (64x64 tiles, two 1024-entry sub-codebooks "vis" and "sem", 8x8 tokens each, 0.3125
/// bits per pixel). Its weights derive from GPL-2+ textures: see `models/LICENSE.md`.
/// It decodes what `fqgan_generator_load_builtin`'s generator makes. Added in ABI minor 2.
///
/// - `params`: NULL for defaults (CPU).
/// - `out_tokenizer`: receives the new handle; set to NULL on failure.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_load_builtin(
    params: *const TokenizerParams,
    out_tokenizer: *mut *mut Tokenizer,
) -> Status {
    guard(|| {
        let out = handle_out(out_tokenizer, "out_tokenizer")?;
        *out = Tokenizer::load(ModelSource::Builtin, params, None, std::ptr::null_mut())?;
        Ok(())
    })
}

/// As `fqgan_tokenizer_load_file`, reporting the tensors read to `progress` (`done` of
/// `total`, on the calling thread); a non-zero return stops the load with
/// `FQGAN_STATUS_CANCELLED` (`out_tokenizer` stays NULL). `progress` may be NULL. Added in
/// ABI minor 4.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_load_file_with_progress(
    path: *const c_char,
    params: *const TokenizerParams,
    progress: ProgressFn,
    user_data: *mut c_void,
    out_tokenizer: *mut *mut Tokenizer,
) -> Status {
    guard(|| {
        let out = handle_out(out_tokenizer, "out_tokenizer")?;
        let path = Path::new(string(path, "path")?);
        *out = Tokenizer::load(ModelSource::File(path), params, progress, user_data)?;
        Ok(())
    })
}

/// As `fqgan_tokenizer_load_memory`, with progress and cancel as
/// `fqgan_tokenizer_load_file_with_progress`. Added in ABI minor 4.
///
/// # Safety
/// As `fqgan_tokenizer_load_memory`.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_load_memory_with_progress(
    data: *const c_void,
    size: usize,
    params: *const TokenizerParams,
    progress: ProgressFn,
    user_data: *mut c_void,
    out_tokenizer: *mut *mut Tokenizer,
) -> Status {
    guard(|| {
        let out = handle_out(out_tokenizer, "out_tokenizer")?;
        // Size first: bindings pass NULL for an empty buffer, and "empty" is the real problem.
        if size == 0 {
            return Err(Failure::invalid("`size` is 0: the model buffer is empty"));
        }
        let bytes = slice(data.cast::<u8>(), size, "data")?;
        *out = Tokenizer::load(ModelSource::Memory(bytes), params, progress, user_data)?;
        Ok(())
    })
}

/// Releases a tokenizer and everything it lent out (names, device string). NULL is a no-op.
/// No other call on this handle may be running or start afterwards.
///
/// # Safety
/// `tokenizer` must be NULL or a handle from `fqgan_tokenizer_load_*` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_free(tokenizer: *mut Tokenizer) {
    if !tokenizer.is_null() {
        // Dropping a model does not panic in practice; if it ever did, the status is
        // discarded (free returns nothing) but the unwind still stops here.
        guard(|| {
            drop(Box::from_raw(tokenizer));
            Ok(())
        });
    }
}

/// Fills `info` (whose `struct_size` the caller set) with the model's sizes.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_get_info(tokenizer: *const Tokenizer, info: *mut TokenizerInfo) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        let config = tokenizer.session.config();
        let (size, grid) = (c_u32("image_size", config.image_size)?, c_u32("grid", config.grid_size())?);
        let value = TokenizerInfo {
            struct_size: std::mem::size_of::<TokenizerInfo>(),
            codebook_count: c_u32("codebook_count", config.k())?,
            image_width: size,
            image_height: size,
            grid_width: grid,
            grid_height: grid,
            downsample: c_u32("downsample", config.downsample())?,
            token_count: tokenizer.token_count(),
            rgba_size: tokenizer.rgba_size(),
            device: tokenizer.device.as_ptr(),
        };
        write_versioned(info, value, "info", "set info->struct_size = sizeof(fqgan_tokenizer_info)")
    })
}

/// Fills `info` (whose `struct_size` the caller set) for sub-codebook `index` (0 .. k - 1,
/// in the order of the token grid).
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_get_codebook(
    tokenizer: *const Tokenizer,
    index: u32,
    info: *mut CodebookInfo,
) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        let codebooks = &tokenizer.session.config().codebooks;
        let codebook = codebooks.get(index as usize).ok_or_else(|| {
            Failure::invalid(format!("`index` is {index}; this tokenizer has {} sub-codebooks", codebooks.len()))
        })?;
        let value = CodebookInfo {
            struct_size: std::mem::size_of::<CodebookInfo>(),
            name: tokenizer.codebook_names[index as usize].as_ptr(),
            size: c_u32("size", codebook.size)?,
            dim: c_u32("dim", codebook.dim)?,
        };
        write_versioned(info, value, "info", "set info->struct_size = sizeof(fqgan_codebook_info)")
    })
}

/// Encodes one image into k token grids.
///
/// - `image`: exactly the model's image size (`fqgan_tokenizer_info.image_width` x
///   `image_height`); other sizes fail with `FQGAN_STATUS_INVALID_ARGUMENT` (resize first).
/// - `tokens`: receives `token_count` ids laid out `[k][grid_height][grid_width]`: all of
///   sub-codebook 0 row by row, then sub-codebook 1, ...
/// - `tokens_capacity`: number of `uint32_t` at `tokens`.
/// - `tokens_required`: may be NULL; receives `token_count`.
///
/// Pass `tokens = NULL, tokens_capacity = 0` to only query the size (`image` is then not read).
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_encode(
    tokenizer: *const Tokenizer,
    image: *const Image,
    tokens: *mut u32,
    tokens_capacity: usize,
    tokens_required: *mut usize,
) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        let names = ["tokens", "tokens_capacity", "tokens_required"];
        let Some(out) = output(tokens, tokens_capacity, tokenizer.token_count(), tokens_required, names)? else {
            return Ok(());
        };
        let image = read_pixels(arg(image, "image")?, false)?.into_rgb8();
        out.copy_from_slice(&tokenizer.session.encode(std::slice::from_ref(&image))?.remove(0).ids);
        Ok(())
    })
}

/// Decodes k token grids (as `fqgan_tokenizer_encode` writes them) into an RGBA8 image of the
/// model's size, rows packed (`stride = image_width * 4`), alpha 255.
///
/// - `token_count`: must equal `fqgan_tokenizer_info.token_count`. Every id must be below
///   its sub-codebook's size, else `FQGAN_STATUS_INVALID_ARGUMENT`.
/// - `rgba_capacity`: bytes at `rgba`; `rgba_required` (may be NULL) receives `rgba_size`.
///
/// Pass `rgba = NULL, rgba_capacity = 0` to only query the size (`tokens` is then not read).
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_decode(
    tokenizer: *const Tokenizer,
    tokens: *const u32,
    token_count: usize,
    rgba: *mut u8,
    rgba_capacity: usize,
    rgba_required: *mut usize,
) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        tokenizer.decode_into(tokens, token_count, None, rgba, rgba_capacity, rgba_required)
    })
}

/// As `fqgan_tokenizer_decode`, using only some sub-codebooks: the others' contributions are
/// zeroed before the decoder, as in the paper's Fig. 3 (e.g. decode only the visual or only the
/// semantic sub-codebook to see what each one captures).
///
/// - `codebooks`: `codebook_count` (>= 1) sub-codebook indices, each below k.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_tokenizer_decode_subset(
    tokenizer: *const Tokenizer,
    tokens: *const u32,
    token_count: usize,
    codebooks: *const u32,
    codebook_count: usize,
    rgba: *mut u8,
    rgba_capacity: usize,
    rgba_required: *mut usize,
) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        // Size first: bindings pass NULL for an empty list, and "empty" is the real problem.
        let which: Vec<usize> = match codebook_count {
            0 => Vec::new(),
            n => slice(codebooks, n, "codebooks")?.iter().map(|&c| c as usize).collect(),
        };
        tokenizer.decode_into(tokens, token_count, Some(&which), rgba, rgba_capacity, rgba_required)
    })
}

impl Tokenizer {
    unsafe fn load(
        source: ModelSource<'_>,
        params: *const TokenizerParams,
        progress: ProgressFn,
        user_data: *mut c_void,
    ) -> Outcome<*mut Tokenizer> {
        let device = if params.is_null() {
            DeviceChoice::Cpu
        } else {
            let params = versioned(params, "params", "initialise it with fqgan_tokenizer_params_default()")?;
            device(params.device, "params->device")?
        };
        let mut progress = reporter(progress, user_data);
        let session =
            TokenizerSession::load_with_progress(source, None, device, &mut progress)?.ok_or_else(cancelled)?;
        let codebook_names = session.config().codebooks.iter().map(|c| c_string(&c.name)).collect();
        let device = c_string(&device.to_string());
        Ok(Box::into_raw(Box::new(Tokenizer { session, device, codebook_names })))
    }

    pub(crate) fn token_count(&self) -> usize {
        self.session.token_count()
    }

    pub(crate) fn rgba_size(&self) -> usize {
        let size = self.session.image_size() as usize;
        size * size * 4
    }

    /// Decodes `token_count` ids at `tokens` with the sub-codebooks `which` (all when `None`).
    unsafe fn decode_into(
        &self,
        tokens: *const u32,
        token_count: usize,
        which: Option<&[usize]>,
        rgba: *mut u8,
        rgba_capacity: usize,
        rgba_required: *mut usize,
    ) -> Outcome {
        let names = ["rgba", "rgba_capacity", "rgba_required"];
        let Some(out) = output(rgba, rgba_capacity, self.rgba_size(), rgba_required, names)? else {
            return Ok(());
        };
        let config = self.session.config();
        let ids = slice(tokens, token_count, "tokens")?.to_vec();
        let grid = TokenGrid { k: config.k(), side: config.grid_size(), ids };
        let image = match which {
            None => self.session.decode(std::slice::from_ref(&grid))?,
            Some(which) => self.session.decode_codebooks(std::slice::from_ref(&grid), which)?,
        };
        write_rgba(&image[0], out);
        Ok(())
    }
}

/// Packed RGBA8 of an RGB image, alpha 255.
pub(crate) fn write_rgba(image: &RgbImage, out: &mut [u8]) {
    for (dst, src) in out.chunks_exact_mut(4).zip(image.pixels()) {
        dst.copy_from_slice(&[src[0], src[1], src[2], 255]);
    }
}

/// Checks an image view and copies its pixels out, top row first (`bottom_up`: the view's rows
/// run from the bottom): RGB for RGB8 views, RGBA for RGBA8.
pub(crate) unsafe fn read_pixels(image: &Image, bottom_up: bool) -> Outcome<DynamicImage> {
    let format = PixelFormat::from_raw(image.format).ok_or_else(|| {
        Failure::invalid(format!(
            "`image->format` is {}; expected FQGAN_PIXEL_FORMAT_RGBA8 (0) or RGB8 (1)",
            image.format
        ))
    })?;
    let (width, height) = (image.width, image.height);
    if width == 0 || height == 0 {
        return Err(Failure::invalid(format!("`image->width` x `image->height` is {width}x{height}: empty")));
    }
    let bpp = format.bytes_per_pixel();
    let row = width as usize * bpp;
    if image.stride < row {
        return Err(Failure::invalid(format!(
            "`image->stride` is {}; {width} pixels of {bpp} bytes need at least {row}",
            image.stride
        )));
    }
    let total = image
        .stride
        .checked_mul(height as usize - 1)
        .and_then(|rows| rows.checked_add(row))
        .ok_or_else(|| Failure::invalid(format!("`image->stride` {} overflows the address space", image.stride)))?;
    let pixels = slice(image.pixels, total, "image->pixels")?;
    let mut packed = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let source = if bottom_up { height as usize - 1 - y } else { y };
        packed.extend_from_slice(&pixels[source * image.stride..][..row]);
    }
    Ok(match format {
        PixelFormat::Rgb8 => DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, packed).expect("w * h * 3")),
        PixelFormat::Rgba8 => DynamicImage::ImageRgba8(RgbaImage::from_raw(width, height, packed).expect("w * h * 4")),
    })
}

pub(crate) fn c_string(text: &str) -> CString {
    // Names and device strings are validated ASCII ([A-Za-z0-9_], "cuda:N"): no NUL inside.
    CString::new(text).expect("no interior NUL")
}
