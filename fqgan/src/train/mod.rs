//! Training machinery shared by the tokenizer and generator trainers.

pub mod ema;
pub mod optim;
pub mod semantic;
pub mod tokenizer;
