//! Training machinery shared by the tokenizer and generator trainers.

pub mod optim;
pub mod tokenizer;
