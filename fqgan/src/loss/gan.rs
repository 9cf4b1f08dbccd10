//! GAN losses on discriminator logits, as in the official `vq_loss.py`.

use burn::tensor::activation::{relu, softplus};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Discriminator objective (official `disc_loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscLoss {
    Hinge,
    Vanilla,
    NonSaturating,
}

/// Generator adversarial objective (official `gen_adv_loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenLoss {
    Hinge,
    NonSaturating,
}

impl DiscLoss {
    pub fn apply<B: Backend>(self, real: Tensor<B, 4>, fake: Tensor<B, 4>) -> Tensor<B, 1> {
        let (loss_real, loss_fake) = match self {
            Self::Hinge => (relu(real.neg() + 1.0).mean(), relu(fake + 1.0).mean()),
            Self::Vanilla => (softplus(real.neg(), 1.0).mean(), softplus(fake, 1.0).mean()),
            // Upstream passes (ones, logits) as (input, target): kept as written for parity.
            Self::NonSaturating => {
                (bce_with_logits(real.ones_like(), real).mean(), bce_with_logits(fake.zeros_like(), fake).mean())
            }
        };
        (loss_real + loss_fake) * 0.5
    }
}

impl GenLoss {
    pub fn apply<B: Backend>(self, fake: Tensor<B, 4>) -> Tensor<B, 1> {
        match self {
            Self::Hinge => fake.mean().neg(),
            Self::NonSaturating => bce_with_logits(fake.ones_like(), fake).mean(),
        }
    }
}

/// Element-wise `F.binary_cross_entropy_with_logits(input, target)`, in its stable form
/// max(x, 0) - x z + log(1 + exp(-|x|)).
fn bce_with_logits<B: Backend>(input: Tensor<B, 4>, target: Tensor<B, 4>) -> Tensor<B, 4> {
    let stable = (input.clone().abs().neg().exp() + 1.0).log();
    input.clone().clamp_min(0.0) - input * target + stable
}
