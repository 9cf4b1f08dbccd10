//! Teacher CLS features computed once and stored, so that training can skip running the frozen
//! teacher on every step: one safetensors file holding one `[width]` f32 tensor per image id.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::weights::{write_safetensors, TensorFile};

/// `__metadata__` `format` value of a features file.
pub const FEATURES_FORMAT: &str = "fqgan.teacher_features.v1";
use crate::weights::FORMAT_KEY;

#[derive(Clone, Debug, PartialEq)]
pub struct TeacherFeatures {
    width: usize,
    by_id: BTreeMap<String, Vec<f32>>,
    /// The file the features came from, for error messages.
    source: PathBuf,
}

impl TeacherFeatures {
    pub fn new(width: usize) -> Self {
        Self { width, by_id: BTreeMap::new(), source: PathBuf::from("<teacher features in memory>") }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Stores `features` [ids.len(), width] (from [`super::Teacher::cls_feature`]) under `ids`,
    /// replacing earlier entries of the same id.
    pub fn insert_batch<B: Backend>(&mut self, ids: &[&str], features: Tensor<B, 2>) -> Result<()> {
        let [rows, width] = features.dims();
        if rows != ids.len() || width != self.width {
            return Err(Error::Input(format!(
                "teacher features are [{rows}, {width}], expected [{}, {}] ({} ids, width {})",
                ids.len(),
                self.width,
                ids.len(),
                self.width
            )));
        }
        let values: Vec<f32> = features.into_data().convert::<f32>().to_vec().expect("f32 after convert");
        for (id, row) in ids.iter().zip(values.chunks(width)) {
            self.by_id.insert(id.to_string(), row.to_vec());
        }
        Ok(())
    }

    /// The features of `ids`, in order, as [ids.len(), width].
    pub fn batch<B: Backend>(&self, ids: &[&str], device: &B::Device) -> Result<Tensor<B, 2>> {
        let mut values = Vec::with_capacity(ids.len() * self.width);
        for id in ids {
            let row = self.by_id.get(*id).ok_or_else(|| {
                Error::Input(format!("{}: no teacher feature for image '{id}'", self.source.display()))
            })?;
            values.extend_from_slice(row);
        }
        Ok(Tensor::from_data(TensorData::new(values, [ids.len(), self.width]), device))
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors =
            self.by_id.iter().map(|(id, row)| (id.clone(), TensorData::new(row.clone(), [self.width]))).collect();
        write_safetensors(
            path.as_ref(),
            &tensors,
            HashMap::from([(FORMAT_KEY.to_string(), FEATURES_FORMAT.to_string())]),
        )
    }

    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let file = TensorFile::read(path)?;
        let source = file.source.clone();
        file.check_format(FEATURES_FORMAT, true)?;
        let mut width = None;
        let mut by_id = BTreeMap::new();
        for (id, data) in file.tensors {
            let shape = data.shape.as_slice().to_vec();
            let row_width = match shape.as_slice() {
                [w] if data.dtype == DType::F32 && width.is_none_or(|expected| expected == *w) => *w,
                _ => {
                    let expected = width.map_or("[width]".to_string(), |w| format!("[{w}]"));
                    return Err(Error::weights(
                        &source,
                        format!("feature '{id}' is {:?} {shape:?}, expected f32 {expected}", data.dtype),
                    ));
                }
            };
            width = Some(row_width);
            by_id.insert(id, data.to_vec::<f32>().expect("checked f32"));
        }
        let width = width.ok_or_else(|| Error::weights(&source, "holds no features"))?;
        Ok(Self { width, by_id, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Cpu;

    fn sample() -> TeacherFeatures {
        let mut features = TeacherFeatures::new(3);
        let rows = Tensor::<Cpu, 2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &Default::default());
        features.insert_batch(&["cat.png", "dir/dog.png"], rows).unwrap();
        features
    }

    #[test]
    fn features_round_trip_through_a_file_and_batch_in_the_asked_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.safetensors");
        sample().save(&path).unwrap();
        let read = TeacherFeatures::read(&path).unwrap();
        assert_eq!((read.width(), read.len()), (3, 2));
        let batch = read.batch::<Cpu>(&["dir/dog.png", "cat.png"], &Default::default()).unwrap();
        assert_eq!(batch.into_data().to_vec::<f32>().unwrap(), vec![4.0, 5.0, 6.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn an_unknown_image_id_names_the_file_and_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.safetensors");
        sample().save(&path).unwrap();
        let err = TeacherFeatures::read(&path)
            .unwrap()
            .batch::<Cpu>(&["bird.png"], &Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("clip.safetensors") && err.contains("bird.png"), "{err}");
    }

    #[test]
    fn a_file_of_another_kind_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.safetensors");
        let tensors = BTreeMap::from([("a".to_string(), TensorData::new(vec![1.0f32], [1]))]);
        write_safetensors(&path, &tensors, HashMap::new()).unwrap();
        let err = TeacherFeatures::read(&path).unwrap_err().to_string();
        assert!(err.contains("weights.safetensors") && err.contains(FEATURES_FORMAT), "{err}");
    }

    #[test]
    fn a_batch_of_the_wrong_width_is_rejected() {
        let mut features = TeacherFeatures::new(4);
        let rows = Tensor::<Cpu, 2>::zeros([1, 3], &Default::default());
        assert!(features.insert_batch(&["a"], rows).is_err());
    }
}
