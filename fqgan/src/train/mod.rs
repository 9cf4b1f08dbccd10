//! Training machinery shared by the tokenizer and generator trainers.

pub mod codes;
pub mod ema;
pub mod far;
pub mod optim;
pub mod semantic;
pub mod tokenizer;
