//! FQGAN: factorized visual tokenization and generation, on burn.
//!
//! - [`tokenizer::Tokenizer`]: images <-> k parallel token grids (`encode`, `decode`,
//!   `decode_subset`), loadable from official checkpoints converted to safetensors.
//! - [`device::DeviceChoice`]: `cpu` (Flex), `ndarray`, `cuda[:N]`, dispatched once to
//!   generic code.

pub mod codec;
pub mod config;
pub mod device;
pub mod error;
pub mod fingerprint;
pub mod image;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod tiling;
pub mod tokenizer;
pub mod tokens;
pub mod verify;
pub mod weights;

pub use burn;
pub use config::TokenizerConfig;
pub use device::DeviceChoice;
pub use error::{Error, Result};
pub use tokenizer::Tokenizer;
