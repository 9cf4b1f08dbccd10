//! The FAR factorized autoregressive generator (paper §3.3).

pub mod block;
pub mod checkpoint;
pub mod config;
pub mod generate;
pub mod head;
pub mod kv_cache;
pub mod model;
pub mod rope;
pub mod sample;

pub use config::FarConfig;
pub use generate::{generate, generate_with_progress, GenerateOptions};
pub use model::Far;
pub use sample::SubTokenSampling;
