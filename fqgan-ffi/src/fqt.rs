//! `.fqt` token files in memory (`docs/fqt-format.md`): write the token grids of an image made
//! with a tokenizer, read them back, and refuse files made by another model.

use std::ffi::c_void;
use std::path::Path;

use fqgan_core::runtime::TileOptions;
use fqgan_core::tokens::{Coding, Header, TokenFile, MAX_CODEBOOKS};

use crate::args::{arg, output, slice, versioned_copy, write_versioned};
use crate::status::{guard, Failure, Outcome, Status};
use crate::tokenizer::Tokenizer;

/// The most sub-codebooks a `.fqt` file holds: the length of `fqgan_fqt_info.codebook_sizes`.
pub const FQGAN_FQT_MAX_CODEBOOKS: usize = 16;

/// How a `.fqt` file stores its token ids; both are lossless.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FqtCoding {
    /// Bit-packed at ceil(log2 codebook size) bits per id: fixed size, fastest.
    Packed = 0,
    /// Adaptive range coding: smaller files.
    Entropy = 1,
}

impl FqtCoding {
    /// `params->coding` from C, checked.
    pub(crate) fn from_raw(value: i32) -> Outcome<Coding> {
        [(Self::Packed, Coding::Packed), (Self::Entropy, Coding::Entropy)]
            .into_iter()
            .find(|(c, _)| *c as i32 == value)
            .map(|(_, coding)| coding)
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "`params->coding` is {value}; expected FQGAN_FQT_CODING_PACKED (0) or ENTROPY (1)"
                ))
            })
    }
}

/// What `fqgan_fqt_write` stores besides the tokens. Get one from
/// `fqgan_fqt_write_params_default()`. `struct_size` follows `fqgan_generate_params`' rule.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FqtWriteParams {
    pub struct_size: usize,
    /// The image's size in pixels; 0 x 0 means the tokenizer's image size (one tile, the size
    /// of images `fqgan_generate_images` and `fqgan_tokenizer_decode` make).
    pub width: u32,
    pub height: u32,
    /// Pixels shared by neighbouring tiles of a larger image, below half a tile; 0 for one tile.
    pub overlap: u32,
    /// An `fqgan_fqt_coding` value.
    pub coding: i32,
}

/// The header of a `.fqt` file. Set `struct_size = sizeof(fqgan_fqt_info)` before passing it
/// to `fqgan_fqt_read`.
#[repr(C)]
pub struct FqtInfo {
    /// In: the caller's `sizeof(fqgan_fqt_info)`. Out: the bytes this library filled.
    pub struct_size: usize,
    /// The image's size in pixels.
    pub width: u32,
    pub height: u32,
    /// Tiles are tile_size x tile_size pixels (the model's image size), overlapping by
    /// tile_overlap; tiles_x * tiles_y of them, row by row.
    pub tile_size: u32,
    pub tile_overlap: u32,
    pub tiles_x: u32,
    pub tiles_y: u32,
    /// Side of each tile's token grids (tile_size / downsample).
    pub grid: u32,
    /// k, the number of sub-codebooks; `codebook_sizes[0 .. k - 1]` are their sizes.
    pub codebook_count: u32,
    pub codebook_sizes: [u32; FQGAN_FQT_MAX_CODEBOOKS],
    /// Ids in the file: tiles_x * tiles_y * codebook_count * grid * grid.
    pub token_count: usize,
    /// 1 when the file also holds an alpha plane (files from `fqgan compress` of RGBA images).
    pub has_alpha: u32,
    /// An `fqgan_fqt_coding` value.
    pub coding: i32,
    /// The model that made the file (128-bit hash of its decoding config and codebooks).
    pub fingerprint: [u8; 16],
}

/// One tile of the tokenizer's image size, bit-packed.
#[no_mangle]
pub extern "C" fn fqgan_fqt_write_params_default() -> FqtWriteParams {
    FqtWriteParams {
        struct_size: std::mem::size_of::<FqtWriteParams>(),
        width: 0,
        height: 0,
        overlap: 0,
        coding: FqtCoding::Packed as i32,
    }
}

/// Writes token grids made with `tokenizer` (by `fqgan_tokenizer_encode` or `fqgan_generate`)
/// as the bytes of a `.fqt` file, stamped with the tokenizer's fingerprint.
///
/// - `params`: NULL for `fqgan_fqt_write_params_default()` (one tile, bit-packed).
/// - `tokens`, `token_count`: the ids of every tile in order, each laid out as
///   `fqgan_tokenizer_encode` writes them: `tiles * k * grid * grid` values, each below its
///   sub-codebook's size.
/// - `bytes`, `bytes_capacity`, `bytes_required`: the output, with the usual size query.
///   The size depends on the tokens (range coding), so the query reads them too.
///
/// # Safety
/// Pointers must be NULL or valid for the documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_fqt_write(
    tokenizer: *const Tokenizer,
    params: *const FqtWriteParams,
    tokens: *const u32,
    token_count: usize,
    bytes: *mut u8,
    bytes_capacity: usize,
    bytes_required: *mut usize,
) -> Status {
    guard(|| {
        let tokenizer = arg(tokenizer, "tokenizer")?;
        let params = if params.is_null() {
            fqgan_fqt_write_params_default()
        } else {
            let init = "initialise it with fqgan_fqt_write_params_default()";
            versioned_copy(
                params,
                "params",
                &[std::mem::size_of::<FqtWriteParams>()],
                fqgan_fqt_write_params_default(),
                init,
            )?
        };
        let file = token_file(tokenizer, &params, slice(tokens, token_count, "tokens")?)?;
        let encoded = file.to_bytes()?;
        let names = ["bytes", "bytes_capacity", "bytes_required"];
        if let Some(out) = output(bytes, bytes_capacity, encoded.len(), bytes_required, names)? {
            out.copy_from_slice(&encoded);
        }
        Ok(())
    })
}

/// Reads the bytes of a `.fqt` file: its header into `info` and its token ids into `tokens`,
/// laid out as `fqgan_fqt_write` takes them (tile by tile, each `[k][grid][grid]`).
///
/// - `tokenizer`: may be NULL; when given, a file made by another model (another fingerprint)
///   fails with `FQGAN_STATUS_INVALID_ARGUMENT` and a message naming both fingerprints, and so
///   does one whose tile size, token grid or codebook sizes do not fit the tokenizer.
/// - `info`: may be NULL; else its `struct_size` must be set.
/// - `tokens`, `tokens_capacity`, `tokens_required`: the usual output and size query; a query
///   (`tokens = NULL, tokens_capacity = 0`) checks the checksum and the header (against the
///   tokenizer when given) and fills `info` without decoding the payload, whose damage only a
///   read of the tokens reports.
///
/// Truncated, corrupt (checksum), unknown-version or otherwise malformed bytes fail with
/// `FQGAN_STATUS_INVALID_ARGUMENT` and a message saying what is wrong. The alpha plane of an
/// RGBA file is not returned (`info->has_alpha` tells that there is one).
///
/// # Safety
/// `bytes` must be NULL or valid for `size` reads; other pointers NULL or valid for the
/// documented use.
#[no_mangle]
pub unsafe extern "C" fn fqgan_fqt_read(
    tokenizer: *const Tokenizer,
    bytes: *const c_void,
    size: usize,
    info: *mut FqtInfo,
    tokens: *mut u32,
    tokens_capacity: usize,
    tokens_required: *mut usize,
) -> Status {
    guard(|| {
        let tokenizer = if tokenizer.is_null() { None } else { Some(arg(tokenizer, "tokenizer")?) };
        if size == 0 {
            return Err(Failure::invalid("`size` is 0: the .fqt buffer is empty"));
        }
        let source = Path::new("`bytes`");
        let bytes = slice(bytes.cast::<u8>(), size, "bytes")?;
        // The header alone answers a size query: the payload may hold 2^26 ids.
        let header = TokenFile::read_header(bytes, source)?;
        if let Some(tokenizer) = tokenizer {
            tokenizer.session.check_header(&header, source)?;
        }
        if !info.is_null() {
            write_versioned(info, file_info(&header), "info", "set info->struct_size = sizeof(fqgan_fqt_info)")?;
        }
        let names = ["tokens", "tokens_capacity", "tokens_required"];
        if let Some(out) = output(tokens, tokens_capacity, header.token_count(), tokens_required, names)? {
            out.copy_from_slice(&TokenFile::from_bytes(bytes, source)?.tokens);
        }
        Ok(())
    })
}

/// The file `fqgan_fqt_write` describes.
fn token_file(tokenizer: &Tokenizer, params: &FqtWriteParams, tokens: &[u32]) -> Outcome<TokenFile> {
    let tile = tokenizer.session.image_size();
    let (width, height) = match (params.width, params.height) {
        (0, 0) => (tile, tile),
        size => size,
    };
    let options = TileOptions {
        overlap: Some(params.overlap),
        coding: FqtCoding::from_raw(params.coding)?,
        ..Default::default()
    };
    Ok(tokenizer.session.token_file(tokens.to_vec(), width, height, &options)?)
}

fn file_info(file: &Header) -> FqtInfo {
    let l = &file.layout;
    const { assert!(FQGAN_FQT_MAX_CODEBOOKS == MAX_CODEBOOKS) };
    let mut codebook_sizes = [0; FQGAN_FQT_MAX_CODEBOOKS];
    codebook_sizes[..file.codebook_sizes.len()].copy_from_slice(&file.codebook_sizes);
    FqtInfo {
        struct_size: std::mem::size_of::<FqtInfo>(),
        width: l.width,
        height: l.height,
        tile_size: l.tile,
        tile_overlap: l.overlap,
        tiles_x: l.tiles_x(),
        tiles_y: l.tiles_y(),
        grid: file.grid,
        codebook_count: file.codebook_sizes.len() as u32,
        codebook_sizes,
        token_count: file.token_count(),
        has_alpha: u32::from(file.has_alpha),
        coding: match file.coding {
            Coding::Packed => FqtCoding::Packed,
            Coding::Entropy => FqtCoding::Entropy,
        } as i32,
        fingerprint: file.fingerprint.0,
    }
}
