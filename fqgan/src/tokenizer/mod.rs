//! The FQGAN factorized tokenizer (paper §3.2, official `tokenizer/vq_model_{dual,triple}.py`).

pub mod adapter;
pub mod blocks;
pub mod checkpoint;
pub mod decoder;
pub mod encoder;
pub mod feat_pred;
pub mod model;
pub mod quantizer;

pub use checkpoint::LoadPurpose;
pub use model::{Tokenizer, TokenizerOutput};
