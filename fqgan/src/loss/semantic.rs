//! Semantic supervision: InfoNCE between a sub-codebook's predicted feature (the class token of
//! its `FeatPredHead`) and a frozen teacher's CLS feature over the batch, as the official
//! `CLIPVisionTower.forward` / `DinoVisionTower.forward` compute it.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::{Error, Result};

/// `-mean_i log(M_ii / sum_j M_ij)` with `M = exp(s v^T)`, `s` and `v` the l2-normalised
/// predicted and teacher features [B, D]. There is no temperature: the logits are plain
/// cosines. The teacher side is detached, so gradients reach only the prediction.
pub fn info_nce<B: Backend>(predicted: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Result<Tensor<B, 1>> {
    if predicted.dims() != teacher.dims() {
        return Err(Error::Input(format!(
            "InfoNCE: predicted features are {:?} but the teacher's are {:?}; the feature-prediction \
             head width must equal the teacher's hidden size",
            predicted.dims(),
            teacher.dims()
        )));
    }
    let s = l2_normalize(predicted);
    let v = l2_normalize(teacher.detach());
    let logits = s.clone().matmul(v.clone().transpose());
    // diag(s v^T) without building the matrix's diagonal.
    let positive = (s * v).sum_dim(1);
    // |logits| <= 1, so exp cannot overflow and the official unshifted form is exact enough.
    let log_denominator = logits.exp().sum_dim(1).log();
    Ok((log_denominator - positive).mean())
}

/// `x / |x|` along the last dimension, without an epsilon, as upstream.
fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::tensor::TensorData;

    use super::*;
    use crate::device::Cpu;

    type B = Autodiff<Cpu>;

    fn tensor(values: [[f32; 3]; 2]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::from(values), &Default::default())
    }

    fn scalar(t: Tensor<B, 1>) -> f32 {
        t.into_data().to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn matches_the_closed_form_for_orthogonal_pairs() {
        // s = v = orthonormal rows: every row's logits are (1, 0), so the loss is log(e + 1) - 1.
        let s = tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0]]);
        let v = tensor([[3.0, 0.0, 0.0], [0.0, 7.0, 0.0]]);
        let expected = (std::f32::consts::E + 1.0).ln() - 1.0;
        assert!((scalar(info_nce(s, v).unwrap()) - expected).abs() < 1e-6);
    }

    #[test]
    fn gradients_reach_the_prediction_only_and_match_finite_differences() {
        let s_values = [[0.3, -1.2, 0.8], [1.1, 0.4, -0.5]];
        let v_values = [[0.9, 0.2, -0.3], [-0.4, 1.0, 0.6]];
        let s = tensor(s_values).require_grad();
        let v = tensor(v_values).require_grad();
        let grads = info_nce(s.clone(), v.clone()).unwrap().backward();
        assert!(v.grad(&grads).is_none(), "the teacher feature must be detached");
        let grad: Vec<f32> = s.grad(&grads).unwrap().to_data().to_vec().unwrap();

        let eps = 1e-2;
        for (k, analytic) in grad.iter().enumerate() {
            let loss_at = |delta: f32| {
                let mut shifted = s_values;
                shifted[k / 3][k % 3] += delta;
                scalar(info_nce(tensor(shifted), tensor(v_values)).unwrap())
            };
            let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps);
            assert!((numeric - analytic).abs() < 1e-3, "entry {k}: numeric {numeric}, autodiff {analytic}");
        }
    }

    #[test]
    fn mismatched_widths_are_an_error() {
        let s = Tensor::<B, 2>::zeros([2, 4], &Default::default());
        let v = Tensor::<B, 2>::zeros([2, 3], &Default::default());
        assert!(info_nce(s, v).unwrap_err().to_string().contains("hidden size"));
    }
}
