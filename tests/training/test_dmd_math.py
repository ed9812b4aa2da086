# SPDX-License-Identifier: Apache-2.0
"""DMD2-v pieces with known answers: the VSD gradient's sign and normaliser, the GAN losses, the
discriminator's size at Wan 1.3B width (App. A.3; docs/method.md §6–7) and the teacher features it reads."""
import torch
import torch.nn.functional as F

from comfyui_tmd.training.discriminator import Discriminator, default_disc_blocks, teacher_features
from comfyui_tmd.training.dmd import (fake_score_loss, gan_discriminator_loss, gan_generator_loss, vsd_gradient,
                                      vsd_loss)

from factories import LATENT, random_wan


def _samples(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 16, 2, 4, 4, generator=g, dtype=torch.float64) for _ in range(3)]


def test_vsd_gradient_is_the_normalised_score_difference():
    x_hat, g_fake, g_teacher = _samples()
    x_hat.requires_grad_(True)
    grad = vsd_gradient(x_hat, g_fake, g_teacher, "dmd")
    vsd_loss(x_hat, grad).backward()
    weight = 1.0 / ((x_hat.detach() - g_teacher).abs().flatten(1).mean(1) + 1e-6)  # DMD: 1/mean|x̂ − g_real|
    expected = (g_fake - g_teacher) * weight[:, None, None, None, None] / x_hat.numel()
    torch.testing.assert_close(x_hat.grad, expected, rtol=1e-4, atol=1e-9)  # computed in float32, as FastGen does


def test_paper_normaliser_uses_the_score_difference():
    x_hat, g_fake, g_teacher = _samples(1)
    grad = vsd_gradient(x_hat, g_fake, g_teacher, "paper")
    weight = 1.0 / ((g_fake - g_teacher).abs().flatten(1).mean(1) + 1e-6)
    expected = (g_fake - g_teacher) * weight[:, None, None, None, None]
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-6)
    # Each sample's gradient has unit mean magnitude under this normaliser.
    torch.testing.assert_close(grad.abs().flatten(1).mean(1), torch.ones(3), rtol=1e-5, atol=0)


def test_a_descent_step_moves_the_sample_towards_the_teacher():
    """Known answer: a fake score that reproduces the sample (g_fake = x̂) leaves −grad ∝ g_teacher − x̂."""
    x_hat, _, g_teacher = _samples(2)
    x_hat.requires_grad_(True)
    vsd_loss(x_hat, vsd_gradient(x_hat, x_hat, g_teacher)).backward()
    stepped = x_hat.detach() - 0.1 * x_hat.numel() * x_hat.grad
    before = (x_hat.detach() - g_teacher).flatten(1).norm(dim=1)
    after = (stepped - g_teacher).flatten(1).norm(dim=1)
    assert (after < before).all()
    cosine = F.cosine_similarity(-x_hat.grad.flatten(1), (g_teacher - x_hat.detach()).flatten(1))
    torch.testing.assert_close(cosine, torch.ones(3, dtype=torch.float64), rtol=1e-9, atol=1e-9)


def test_gan_and_fake_score_losses():
    g = torch.Generator().manual_seed(3)
    fake, real = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    torch.testing.assert_close(gan_generator_loss(fake), -F.logsigmoid(fake).mean())
    torch.testing.assert_close(gan_discriminator_loss(fake, real),
                               -F.logsigmoid(-fake).mean() - F.logsigmoid(real).mean())
    g_fake = torch.randn(2, 4, generator=g, requires_grad=True)
    x_hat = torch.randn(2, 4, generator=g, requires_grad=True)
    fake_score_loss(g_fake, x_hat).backward()
    assert x_hat.grad is None  # the fake score learns the sample; the sample is not pulled towards it


def test_discriminator_has_68m_parameters_at_wan_1_3b_width():
    with torch.device("meta"):
        disc = Discriminator(1536, 3)
    count = sum(p.numel() for p in disc.parameters())
    assert count == 67_870_467  # 3 heads × 22,623,489; the paper states 68M
    assert abs(count / 68e6 - 1) < 0.005


def test_default_feature_blocks():
    assert default_disc_blocks(30) == [15, 22, 29]
    assert default_disc_blocks(40) == [19, 29, 39]
    assert default_disc_blocks(6) == [2, 4, 5]


def test_teacher_features_are_the_unpatchified_block_outputs(inputs):
    wan = random_wan()
    x, t, context = inputs
    captured = {}
    hooks = [wan.blocks[i].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out)) for i in (2, 4)]
    with torch.no_grad():
        wan(x, 1000 * t, context)
        features = teacher_features(wan, x, t, context, [2, 4])
    for h in hooks:
        h.remove()
    grid = (LATENT[2], LATENT[3] // 2, LATENT[4] // 2)
    for feature, block in zip(features, (2, 4), strict=True):
        assert feature.shape == (LATENT[0], 64 // 4, *LATENT[2:])
        torch.testing.assert_close(feature, wan.unpatchify(captured[block], grid), rtol=0, atol=0)
    logits = Discriminator(64, 2)(features)
    assert logits.shape == (LATENT[0], 2) and torch.isfinite(logits).all()
