//! The inference API every caller uses: the `fqgan` command line, the asset tools and the C
//! library. It is host-typed (images, token grids, `.fqt` files) and backend-erased: the
//! backend is chosen once, when a session loads (see [`crate::DeviceChoice`]), and calls
//! then go through a trait object, so nothing above this module is generic over burn.
//!
//! - [`TokenizerSession`]: encode and decode images of the model's size, decode with a subset
//!   of sub-codebooks, and compress or decompress images of any size to and from `.fqt`.
//! - [`GeneratorSession`]: class-conditional generation of token grids, in batches, with
//!   guidance, prefix completion, progress and cancel.
//!
//! Every argument is checked here, once, on host data, before anything is uploaded; a refused
//! argument is an [`Error::Argument`](crate::Error::Argument) naming it by [`Arg`].
//! Work runs on the CPU thread pool ([`crate::threads::on_pool`]); progress callbacks run on
//! the calling thread.

mod generator;
mod token_grid;
mod tokenizer;

use std::fmt;
use std::path::Path;

use crate::builtin::BuiltinModel;
use crate::codec::Progress;
use crate::error::Result;
use crate::threads::on_pool_reporting;
use crate::weights::TensorFile;

pub use generator::{GenerateRequest, GeneratorSession, Prefix};
pub use token_grid::TokenGrid;
pub use tokenizer::{TileOptions, TokenizerSession};

/// Where a model's bytes come from.
#[derive(Clone, Copy, Debug)]
pub enum ModelSource<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
    /// The model compiled into the library ([`crate::builtin`]).
    Builtin,
}

impl ModelSource<'_> {
    /// The model's tensors (`builtin` for [`ModelSource::Builtin`]), reporting each tensor
    /// read to `progress`; `None` when it stopped the read.
    fn tensors(&self, builtin: &BuiltinModel, progress: &mut Progress<'_>) -> Result<Option<TensorFile>> {
        match self {
            ModelSource::File(path) => TensorFile::read_with_progress(path, progress),
            ModelSource::Memory(bytes) => TensorFile::from_bytes_with_progress(bytes, "<memory>", progress),
            // Compiled in and a few MB: read whole, reported as done.
            ModelSource::Builtin => {
                let file = builtin.tensor_file()?;
                Ok(progress(1, 1).is_continue().then_some(file))
            }
        }
    }
}

impl fmt::Display for ModelSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::File(path) => write!(f, "{}", path.display()),
            ModelSource::Memory(bytes) => write!(f, "{} bytes of memory", bytes.len()),
            ModelSource::Builtin => write!(f, "the built-in model"),
        }
    }
}

/// Reads `source` (`builtin` for [`ModelSource::Builtin`]) on the CPU pool, with `progress`
/// told each tensor on the calling thread, and builds its model from the file with `build`;
/// `None` when `progress` stopped the read.
fn load_model<T: Send>(
    source: ModelSource<'_>,
    builtin: &BuiltinModel,
    progress: &mut Progress<'_>,
    build: impl FnOnce(&TensorFile) -> Result<T> + Send,
) -> Result<Option<T>> {
    crate::threads::configure(None)?;
    on_pool_reporting(progress, |progress| match source.tensors(builtin, progress)? {
        Some(file) => build(&file).map(Some),
        None => Ok(None),
    })
}

/// The arguments a session call can refuse. Front ends map them to their own names (the C
/// library to its parameter names, e.g. `params->top_p`); [`Arg::name`] is the plain one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// The width and height of an image given for encoding.
    ImageSize,
    /// The number of ids in a token grid.
    TokenCount,
    /// One id of a token grid (indexed in its `[k][row][column]` layout).
    Token,
    /// The number of sub-codebooks chosen for decoding.
    CodebookCount,
    /// One chosen sub-codebook (indexed in the list of choices).
    Codebook,
    /// A class label to generate.
    ClassId,
    /// The number of images to generate.
    Count,
    CfgScale,
    Temperature,
    TopP,
    /// The pixels adjacent tiles share.
    Overlap,
    /// The number of token rows a completion keeps.
    PrefixRows,
    /// The number of ids in a completion's prefix.
    PrefixCount,
    /// One id of a completion's prefix (indexed in its flattened `[grids][k][row][column]` layout).
    Prefix,
    /// How a generator stores its weights.
    WeightPrecision,
}

impl Arg {
    pub fn name(self) -> &'static str {
        match self {
            Arg::ImageSize => "image size",
            Arg::TokenCount => "token count",
            Arg::Token => "token",
            Arg::CodebookCount => "codebook count",
            Arg::Codebook => "codebook",
            Arg::ClassId => "class",
            Arg::Count => "count",
            Arg::CfgScale => "cfg_scale",
            Arg::Temperature => "temperature",
            Arg::TopP => "top_p",
            Arg::Overlap => "overlap",
            Arg::PrefixRows => "prefix rows",
            Arg::PrefixCount => "prefix count",
            Arg::Prefix => "prefix",
            Arg::WeightPrecision => "weight precision",
        }
    }
}
