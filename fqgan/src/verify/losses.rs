//! The `loss` family: LPIPS, the PatchGAN discriminator and the GAN losses.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::Checker;
use crate::error::{Error, Result};
use crate::loss::discriminator::{DiscriminatorConfig, PatchDiscriminator};
use crate::loss::gan::{DiscLoss, GenLoss};
use crate::loss::lpips::{Lpips, LpipsConfig};

/// LPIPS, the PatchGAN discriminator and the GAN losses (case family `loss`).
pub(super) fn verify_losses<B: Backend>(
    dir: &Path,
    golden: &serde_json::Value,
    checker: &mut Checker<'_>,
    device: &B::Device,
) -> Result<()> {
    let field = |path: &[&str]| {
        path.iter()
            .try_fold(golden, |v, key| v.get(key))
            .ok_or_else(|| Error::Config(format!("golden config has no `{}`", path.join("."))))
    };
    let vgg_cfg = field(&["lpips", "vgg_cfg"])?
        .as_array()
        .ok_or_else(|| Error::Config("`lpips.vgg_cfg` is not a list".into()))?
        .iter()
        .map(|entry| entry.as_u64().map(|c| c as usize))
        .collect();
    let lpips = Lpips::<B>::load(dir.join("weights_lpips.safetensors"), &LpipsConfig { vgg_cfg }, device)?;
    let count = |path: &[&str]| -> Result<usize> {
        field(path)?
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| Error::Config(format!("`{}` is not a count", path.join("."))))
    };
    let disc_config = DiscriminatorConfig {
        in_channels: count(&["discriminator", "input_nc"])?,
        ndf: count(&["discriminator", "ndf"])?,
        n_layers: count(&["discriminator", "n_layers"])?,
    };
    let disc = PatchDiscriminator::<B>::load(dir.join("weights_discriminator.safetensors"), &disc_config, device)?;

    let image = |name: &str| -> Result<Tensor<B, 4>> {
        Ok(Tensor::from_data(checker.io.get(name)?.clone().convert::<f32>(), device))
    };
    let (x0, x1) = (image("x0")?, image("x1")?);
    for (k, features) in lpips.features(lpips.scale_input(x0.clone())).into_iter().enumerate() {
        checker.float(&format!("act_vgg_slice{}_in0", k + 1), features);
    }
    for (k, map) in lpips.lin_maps(x0.clone(), x1.clone()).into_iter().enumerate() {
        checker.float(&format!("act_lin{k}"), map);
    }
    checker.float("lpips", lpips.forward(x0.clone(), x1.clone()));

    let real = disc.forward(x0, false);
    let fake = disc.forward(x1, false);
    checker.float("disc_logits_real", real.clone());
    checker.float("disc_logits_fake", fake.clone());
    checker.float("d_loss_hinge", DiscLoss::Hinge.apply(real.clone(), fake.clone()));
    checker.float("d_loss_vanilla", DiscLoss::Vanilla.apply(real.clone(), fake.clone()));
    checker.float("d_loss_non_saturating", DiscLoss::NonSaturating.apply(real, fake.clone()));
    checker.float("g_loss_hinge", GenLoss::Hinge.apply(fake.clone()));
    checker.float("g_loss_non_saturating", GenLoss::NonSaturating.apply(fake));
    Ok(())
}
