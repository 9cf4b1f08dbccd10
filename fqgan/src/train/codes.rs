//! Token codes of a labelled image set: what `extract-codes` writes and the generator trains
//! on (official `extract_codes_c2i_*` saves one `.npy` per image; here one safetensors file).
//!
//! `ids` is `[images, views, k, tokens]` (each image encoded under a few fixed views: crops
//! and flips), `labels` `[images]`. The metadata names the classes and records the
//! tokenizer's config and fingerprint, so that a generator is trained on the vocabulary it
//! will be decoded with.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::far::FarConfig;
use crate::weights::{write_safetensors, TensorFile};

pub const CODES_FORMAT: &str = "fqgan.codes.v1";

#[derive(Clone, Debug, PartialEq)]
pub struct Codes {
    /// Token ids, `[images, views, k, tokens]` row-major.
    pub ids: Vec<i32>,
    pub views: usize,
    /// Tokens per image and sub-token (the token grid's h * w).
    pub tokens: usize,
    /// One codebook size per sub-token.
    pub vocab_sizes: Vec<usize>,
    /// One class index per image, into `classes`.
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    /// How the views were made (e.g. `ten-crop x1.1`), for the record.
    pub view_kind: String,
    /// The tokenizer's fingerprint ([`crate::fingerprint::Fingerprint`], hex) and config JSON.
    pub tokenizer_fingerprint: String,
    pub tokenizer_config: String,
}

impl Codes {
    pub fn k(&self) -> usize {
        self.vocab_sizes.len()
    }

    pub fn images(&self) -> usize {
        self.labels.len()
    }

    /// The `k * tokens` ids of one view of one image.
    pub fn row(&self, image: usize, view: usize) -> &[i32] {
        let len = self.k() * self.tokens;
        let start = (image * self.views + view) * len;
        &self.ids[start..start + len]
    }

    /// A batch `[B, k, tokens]` of the given (image, view) rows and their labels `[B]`.
    pub fn batch<B: Backend>(
        &self,
        rows: &[(usize, usize)],
        device: &B::Device,
    ) -> (Tensor<B, 3, Int>, Tensor<B, 1, Int>) {
        let ids: Vec<i32> = rows.iter().flat_map(|&(image, view)| self.row(image, view).iter().copied()).collect();
        let labels: Vec<i32> = rows.iter().map(|&(image, _)| self.labels[image] as i32).collect();
        (
            Tensor::from_data(TensorData::new(ids, [rows.len(), self.k(), self.tokens]), device),
            Tensor::from_data(TensorData::new(labels, [rows.len()]), device),
        )
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let ids = TensorData::new(self.ids.clone(), [self.images(), self.views, self.k(), self.tokens]);
        let labels = TensorData::new(self.labels.iter().map(|&l| l as i32).collect::<Vec<_>>(), [self.images()]);
        let tensors = BTreeMap::from([("codes".to_string(), ids), ("labels".to_string(), labels)]);
        let metadata = HashMap::from([
            ("format".to_string(), CODES_FORMAT.to_string()),
            ("classes".to_string(), serde_json::to_string(&self.classes).expect("serialises")),
            ("vocab_sizes".to_string(), serde_json::to_string(&self.vocab_sizes).expect("serialises")),
            ("views".to_string(), self.view_kind.clone()),
            ("tokenizer_fingerprint".to_string(), self.tokenizer_fingerprint.clone()),
            ("tokenizer_config".to_string(), self.tokenizer_config.clone()),
        ]);
        write_safetensors(path, &tensors, metadata)
    }

    /// Reads and checks a codes file: shapes agree, ids lie in their vocabularies, labels
    /// name a class.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_tensor_file(&TensorFile::read(path)?, path)
    }

    /// As [`Codes::load`], from a parsed file (`path` names it in errors).
    pub fn from_tensor_file(file: &TensorFile, path: &Path) -> Result<Self> {
        let bad = |message: String| Error::weights(path, message);
        file.check_format(CODES_FORMAT, true)?;
        let json_meta = |key: &str| -> Result<serde_json::Value> {
            let text = file.metadata.get(key).ok_or_else(|| bad(format!("metadata has no '{key}'")))?;
            serde_json::from_str(text).map_err(|e| bad(format!("metadata '{key}': {e}")))
        };
        let classes: Vec<String> =
            serde_json::from_value(json_meta("classes")?).map_err(|e| bad(format!("metadata 'classes': {e}")))?;
        let vocab_sizes: Vec<usize> = serde_json::from_value(json_meta("vocab_sizes")?)
            .map_err(|e| bad(format!("metadata 'vocab_sizes': {e}")))?;
        if let Some(size) = vocab_sizes.iter().find(|&&v| !(2..=1 << 24).contains(&v)) {
            return Err(bad(format!("metadata 'vocab_sizes' lists {size}; each must be in 2..=2^24")));
        }
        let text = |key: &str| file.metadata.get(key).cloned().unwrap_or_default();

        let codes = file.get("codes")?;
        let [images, views, k, tokens] = <[usize; 4]>::try_from(codes.shape.to_vec())
            .map_err(|shape| bad(format!("'codes' has shape {shape:?}; expected [images, views, k, tokens]")))?;
        if k != vocab_sizes.len() {
            return Err(bad(format!("'codes' has {k} sub-tokens but vocab_sizes lists {}", vocab_sizes.len())));
        }
        let ids = integers(codes, "codes").map_err(&bad)?;
        let labels = file.get("labels")?;
        if labels.shape.to_vec() != [images] {
            return Err(bad(format!("'labels' has shape {:?}; expected [{images}]", labels.shape)));
        }
        let labels = integers(labels, "labels").map_err(&bad)?;
        if let Some(&l) = labels.iter().find(|&&l| l < 0 || l as usize >= classes.len()) {
            return Err(bad(format!("label {l} is not one of the {} classes", classes.len())));
        }
        for (i, &id) in ids.iter().enumerate() {
            let j = (i / tokens) % k;
            if id < 0 || id as u64 >= vocab_sizes[j] as u64 {
                return Err(bad(format!(
                    "sub-token {} id {id} is outside its vocabulary 0..{}",
                    j + 1,
                    vocab_sizes[j]
                )));
            }
        }
        if images == 0 || views == 0 || tokens == 0 {
            return Err(bad(format!("'codes' is empty (shape [{images}, {views}, {k}, {tokens}])")));
        }
        Ok(Self {
            // Each id lies in its vocabulary, at most 2^24 (checked above): it fits in i32.
            ids: ids.into_iter().map(|id| id as i32).collect(),
            views,
            tokens,
            vocab_sizes,
            labels: labels.into_iter().map(|l| l as usize).collect(),
            classes,
            view_kind: text("views"),
            tokenizer_fingerprint: text("tokenizer_fingerprint"),
            tokenizer_config: text("tokenizer_config"),
        })
    }

    /// Whether a generator with `config` can train on these codes; the error names the field.
    pub fn check_far(&self, config: &FarConfig) -> Result<()> {
        if config.vocab_sizes != self.vocab_sizes {
            return Err(Error::Config(format!(
                "FAR `vocab_sizes` {:?} differ from the codes' codebook sizes {:?}",
                config.vocab_sizes, self.vocab_sizes
            )));
        }
        if config.block_size != self.tokens {
            return Err(Error::Config(format!(
                "FAR `block_size` {} differs from the codes' {} tokens per image",
                config.block_size, self.tokens
            )));
        }
        if config.num_classes < self.classes.len() {
            return Err(Error::Config(format!(
                "FAR `num_classes` {} is fewer than the codes' {} classes",
                config.num_classes,
                self.classes.len()
            )));
        }
        if !config.class_names.is_empty() && config.class_names[..self.classes.len()] != self.classes[..] {
            return Err(Error::Config(format!(
                "FAR `class_names` {:?} differ from the codes' classes {:?}",
                config.class_names, self.classes
            )));
        }
        Ok(())
    }

    /// Whether `other` (validation codes) comes from the same tokenizer and classes.
    pub fn check_compatible(&self, other: &Codes) -> Result<()> {
        if other.vocab_sizes != self.vocab_sizes
            || other.tokens != self.tokens
            || other.tokenizer_fingerprint != self.tokenizer_fingerprint
        {
            return Err(Error::Input(format!(
                "the codes were made with different tokenizers (fingerprints {} and {})",
                self.tokenizer_fingerprint, other.tokenizer_fingerprint
            )));
        }
        if other.classes != self.classes {
            return Err(Error::Input(format!(
                "the codes have different classes: {:?} and {:?}",
                self.classes, other.classes
            )));
        }
        Ok(())
    }
}

/// The class-blind unigram baseline: each sub-token's id frequencies over all of `train`
/// (add-one smoothed), scored on every row of `eval` as the mean cross entropy per sub-token
/// in nats, averaged over sub-tokens like the generator's loss.
pub fn unigram_loss(train: &Codes, eval: &Codes) -> f64 {
    let k = train.k();
    let mut per_sub_token = vec![0.0; k];
    for (j, &vocab) in train.vocab_sizes.iter().enumerate() {
        let mut counts = vec![0u64; vocab];
        for id in sub_token_ids(train, j) {
            counts[id as usize] += 1;
        }
        let total: u64 = counts.iter().sum::<u64>() + vocab as u64;
        let (mut sum, mut n) = (0.0, 0usize);
        for id in sub_token_ids(eval, j) {
            sum -= ((counts[id as usize] + 1) as f64 / total as f64).ln();
            n += 1;
        }
        per_sub_token[j] = sum / n as f64;
    }
    per_sub_token.iter().sum::<f64>() / k as f64
}

fn sub_token_ids(codes: &Codes, j: usize) -> impl Iterator<Item = i32> + '_ {
    codes.ids.chunks(codes.tokens).skip(j).step_by(codes.k()).flatten().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(ids: Vec<i32>, labels: Vec<usize>) -> Codes {
        Codes {
            views: 1,
            tokens: ids.len() / labels.len() / 2,
            ids,
            vocab_sizes: vec![4, 2],
            labels,
            classes: vec!["a".into(), "b".into()],
            view_kind: "center".into(),
            tokenizer_fingerprint: "00".into(),
            tokenizer_config: "{}".into(),
        }
    }

    /// Found by the codes_file fuzz target: float ids out of i32's range made burn's cast
    /// panic. Ids and labels must be integer tensors, vocabularies bounded.
    #[test]
    fn float_ids_and_absurd_vocabularies_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codes.safetensors");
        codes(vec![0, 0, 1, 1, 1, 0, 1, 1], vec![0, 1]).save(&path).unwrap();
        let good = TensorFile::read(&path).unwrap();
        Codes::from_tensor_file(&good, &path).unwrap();

        let mut floats = TensorFile::read(&path).unwrap();
        floats.tensors.insert("codes".into(), TensorData::new(vec![3e10f32; 8], [2, 1, 2, 2]));
        let err = Codes::from_tensor_file(&floats, &path).unwrap_err().to_string();
        assert!(err.contains("'codes' holds F32 values"), "{err}");
        let mut labels = TensorFile::read(&path).unwrap();
        labels.tensors.insert("labels".into(), TensorData::new(vec![0.5f32, 1.0], [2]));
        assert!(Codes::from_tensor_file(&labels, &path).unwrap_err().to_string().contains("'labels' holds F32"));
        let mut vocab = TensorFile::read(&path).unwrap();
        vocab.metadata.insert("vocab_sizes".into(), "[4, 1099511627776]".into());
        let err = Codes::from_tensor_file(&vocab, &path).unwrap_err().to_string();
        assert!(err.contains("1099511627776") && err.contains("2..=2^24"), "{err}");
    }

    #[test]
    fn unigram_counts_each_sub_token_separately_with_add_one() {
        // Sub-token 1 of the train codes: ids 0,0,1,0 -> counts [3,1,0,0] + 1 over 8.
        // Sub-token 2: ids 1,1,1,1 -> counts [0,4] + 1 over 6.
        let train = codes(vec![0, 0, 1, 1, 1, 0, 1, 1], vec![0, 1]);
        let eval = codes(vec![0, 2, 1, 0], vec![1]);
        let expected = (-(4.0f64 / 8.0).ln() - (1.0f64 / 8.0).ln()) / 2.0 / 2.0
            + (-(5.0f64 / 6.0).ln() - (1.0f64 / 6.0).ln()) / 2.0 / 2.0;
        assert!((unigram_loss(&train, &eval) - expected).abs() < 1e-12);
    }

    #[test]
    fn files_round_trip_and_bad_ids_name_the_sub_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codes.safetensors");
        let original = codes(vec![0, 3, 1, 0, 2, 2, 0, 1], vec![1, 0]);
        original.save(&path).unwrap();
        assert_eq!(Codes::load(&path).unwrap(), original);
        let mut broken = original.clone();
        broken.ids[2] = 2; // sub-token 2 has only ids 0 and 1
        broken.save(&path).unwrap();
        let err = Codes::load(&path).unwrap_err().to_string();
        assert!(err.contains("sub-token 2 id 2"), "{err}");
    }
}

/// An integer tensor's values: ids and labels are I32 or I64 (float values would be rounded,
/// and an out-of-range one made burn's cast panic).
fn integers(data: &TensorData, name: &str) -> std::result::Result<Vec<i64>, String> {
    match data.dtype {
        DType::I64 | DType::I32 => {
            data.clone().convert::<i64>().to_vec().map_err(|e| format!("'{name}' cannot be read: {e:?}"))
        }
        other => Err(format!("'{name}' holds {other:?} values; it must be I32 or I64")),
    }
}
