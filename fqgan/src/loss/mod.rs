//! Training objectives that live outside the model modules.

pub mod disentangle;
pub mod semantic;
