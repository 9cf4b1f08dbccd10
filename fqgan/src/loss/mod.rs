//! Training objectives that live outside the tokenizer modules.

pub mod discriminator;
pub mod disentangle;
pub mod gan;
pub mod lpips;
pub mod semantic;
