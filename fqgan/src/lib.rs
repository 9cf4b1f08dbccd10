//! FQGAN: factorized visual tokenization and generation, on burn.
//!
//! - [`tokenizer::Tokenizer`]: images <-> k parallel token grids (`encode`, `decode`,
//!   `decode_subset`), loadable from official checkpoints converted to safetensors.
//! - [`far::Far`]: the factorized autoregressive generator, class label -> k token grids
//!   (`far::generate`), loadable from official checkpoints the same way.
//! - [`device::DeviceChoice`]: `cpu` (Flex), `ndarray`, `cuda[:N]`, dispatched once to
//!   generic code.
//! - [`teachers::Teacher`]: frozen CLIP / DINOv2 vision towers (HF safetensors) whose CLS
//!   features supervise the semantic sub-codebooks through [`loss::semantic::info_nce`].

pub mod bounds;
pub mod builtin;
pub mod codec;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod far;
pub mod fingerprint;
mod flex_kernels;
pub mod image;
pub mod layers;
pub mod loss;
pub mod malloc;
pub mod metrics;
pub mod runtime;
pub mod teachers;
pub mod threads;
pub mod tiling;
pub mod tokenizer;
pub mod tokens;
mod trace;
pub mod train;
#[cfg(feature = "golden")]
pub mod verify;
pub mod weights;

pub use burn;
pub use config::TokenizerConfig;
pub use device::DeviceChoice;
pub use error::{Error, Result};
pub use far::{Far, FarConfig};
pub use layers::WeightPrecision;
pub use tokenizer::Tokenizer;
