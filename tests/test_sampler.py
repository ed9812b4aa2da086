# SPDX-License-Identifier: Apache-2.0
"""The TMD sampler against a literal Algorithm 1 (sign-corrected), its analytic start, caching, seeds,
callbacks, Cancel, NaN detection, and the teacher's CFG sampler."""
import pytest
import torch
from torch.overrides import TorchFunctionMode

from comfyui_tmd.tmd_core import (CFGDenoiser, NonFiniteError, SamplingConfigError, TMDDenoiser, generate_teacher,
                                  generate_tmd, inner_rollout, teacher_sigmas, tmd_grid)

from factories import LATENT, perturb_extras


@pytest.fixture
def trained(student):
    """A student whose extras are no longer at their identity initialisation."""
    return perturb_extras(student)


def algorithm_1(student, context, shape, seed, m, n, form="y1"):
    """The paper's Algorithm 1 (flow-map sign corrected) written out literally, recomputing everything at every step
    (fresh y1 per outer step); `form` "ys" replaces Eq. 14's u = y1 − head by u = (y_s − head)/s."""
    g = torch.Generator().manual_seed(seed)
    t, s = tmd_grid(m), tmd_grid(n)
    x = t[0] * torch.randn(shape, generator=g)
    batch = shape[0]
    for i in range(m):
        features = student.backbone(x, torch.full((batch,), t[i]), context)
        y1 = torch.randn(shape, generator=g)
        y = y1
        for j in range(n):
            time = student.head_time(torch.full((batch,), s[j]), torch.full((batch,), s[j + 1]), x.dtype)
            head = student.head(features, y, time)
            u = y1 - head if form == "y1" else (y - head) / s[j]
            y = y - (s[j] - s[j + 1]) * u
        x = x - (t[i] - t[i + 1]) * y
    return x


@pytest.mark.parametrize("form", ["y1", "ys"])
@pytest.mark.parametrize("m, n", [(1, 1), (1, 2), (2, 2), (2, 4), (3, 2)])
def test_sampler_equals_algorithm_1(trained, inputs, m, n, form):
    _, _, context = inputs
    with torch.no_grad():
        ours = generate_tmd(trained, context, LATENT, seed=11, outer_steps=m, inner_steps=n, inner_form=form)
        ref = algorithm_1(trained, context, LATENT, seed=11, m=m, n=n, form=form)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_fresh_student_is_one_teacher_euler_step_per_outer_step(student, wan, inputs):
    """docs/method.md §2.4: head ≡ v_teacher gives ŷ = 0.001·y1 + 0.999·v after the N=1 inner flow."""
    _, _, context = inputs
    g = torch.Generator().manual_seed(3)
    noise, y1 = torch.randn(LATENT, generator=g), torch.randn(LATENT, generator=g)
    x = 0.999 * noise
    with torch.no_grad():
        v = wan(x, torch.full((LATENT[0],), 999.0), context)
        expected = x - 0.999 * (0.001 * y1 + 0.999 * v)
        ours = generate_tmd(student, context, LATENT, seed=3, outer_steps=1, inner_steps=1)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_cached_and_recomputed_features_give_identical_inner_steps(trained, inputs):
    x, t, context = inputs
    denoiser = TMDDenoiser(trained, context, inner_steps=2)
    with torch.no_grad():
        embedded, (freqs, times) = denoiser.embedded_context(x), denoiser.prepare(x)
        cached = trained.backbone(x, t, context, embedded_context=embedded, freqs=freqs)
        fresh = trained.backbone(x, t, context)
        y1 = torch.randn_like(x)
        a = inner_rollout(trained, cached, y1, times, denoiser.inner_grid)
        fresh_times = [trained.head_time(torch.full_like(t, s), torch.full_like(t, r), x.dtype)
                       for s, r in zip(denoiser.inner_grid[:-1], denoiser.inner_grid[1:], strict=True)]
        b = inner_rollout(trained, fresh, y1, fresh_times, denoiser.inner_grid)
    assert torch.equal(cached.tokens, fresh.tokens)
    assert torch.equal(a, b)


def test_same_seed_same_video_other_seed_other_video(trained, inputs):
    _, _, context = inputs
    with torch.no_grad():
        a = generate_tmd(trained, context, LATENT, seed=5)
        b = generate_tmd(trained, context, LATENT, seed=5)
        c = generate_tmd(trained, context, LATENT, seed=6)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.1


class HostSyncDetector(TorchFunctionMode):
    """Records tensor→host conversions (each one a device synchronisation on a GPU)."""

    SYNCING = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
               torch.Tensor.__int__, torch.Tensor.numpy, torch.Tensor.cpu, torch.Tensor.nonzero}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SYNCING:
            self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_sync_detector_sees_host_syncs():
    x = torch.randn(3)
    with HostSyncDetector() as detector:
        x.sum().item()
        bool(x.max() > 0)
        x.tolist()
    assert detector.calls == ["item", "__bool__", "tolist"]


def test_inner_loop_makes_no_host_sync_and_updates_in_place(trained, inputs):
    x, t, context = inputs
    denoiser = TMDDenoiser(trained, context, inner_steps=4)
    pointers = []
    with torch.no_grad():
        embedded, (freqs, times) = denoiser.embedded_context(x), denoiser.prepare(x)
        features = trained.backbone(x, t, context, embedded_context=embedded, freqs=freqs)
        y1 = torch.randn_like(x)
        with HostSyncDetector() as detector:
            inner_rollout(trained, features, y1, times, denoiser.inner_grid,
                          callback=lambda d: pointers.append(d["y"].data_ptr()))
    assert detector.calls == []
    assert len(pointers) == 4 and len(set(pointers)) == 1  # one buffer for y across all inner steps


def test_callbacks_fire_per_outer_and_per_inner_step(trained, inputs):
    _, _, context = inputs
    outer, inner = [], []
    with torch.no_grad():
        generate_tmd(trained, context, LATENT, seed=1, outer_steps=3, inner_steps=2,
                     callback=lambda d: outer.append((d["i"], float(d["sigma"]))),
                     inner_callback=lambda d: inner.append((d["inner_step"], d["inner_steps"])))
    assert [i for i, _ in outer] == [0, 1, 2]
    assert [s for _, s in outer] == pytest.approx(tmd_grid(3)[:-1], abs=1e-6)
    assert inner == [(0, 2), (1, 2)] * 3


class Cancelled(Exception):
    pass


def test_cancel_stops_within_one_inner_step(trained, inputs):
    _, _, context = inputs
    head_calls = []
    original = trained.head

    def counting_head(*args, **kwargs):
        head_calls.append(1)
        return original(*args, **kwargs)

    trained.head = counting_head
    checks = []

    def interrupt():
        checks.append(1)
        if len(checks) == 3:  # Cancel pressed during the second inner step of the second outer step
            raise Cancelled

    with torch.no_grad(), pytest.raises(Cancelled):
        generate_tmd(trained, context, LATENT, seed=1, outer_steps=2, inner_steps=2, interrupt=interrupt)
    assert len(head_calls) == 2  # the head never ran again after the check that raised


def test_nan_in_the_output_is_reported(trained, inputs):
    _, _, context = inputs
    with torch.no_grad():
        trained.wan.blocks[1].ffn[2].bias[0] = float("nan")
        with pytest.raises(NonFiniteError, match="NaN or inf values at step 1 of 2"):
            generate_tmd(trained, context, LATENT, seed=1)


@pytest.mark.parametrize("m, n", [(0, 2), (2, 0), (1.5, 2), (2, -3)])
def test_impossible_step_counts(trained, inputs, m, n):
    _, _, context = inputs
    with pytest.raises(SamplingConfigError):
        generate_tmd(trained, context, LATENT, seed=1, outer_steps=m, inner_steps=n)


def test_latent_shape_mismatch_in_the_sampler(trained, inputs):
    from comfyui_tmd.tmd_core import LatentShapeError
    _, _, context = inputs
    with pytest.raises(LatentShapeError, match="expected \\[batch, 16"):
        generate_tmd(trained, context, (2, 4, 3, 4, 6), seed=1)


@pytest.mark.parametrize("batch_cfg", [True, False])
def test_teacher_cfg_equals_explicit_guidance(wan, inputs, batch_cfg):
    x, t, context = inputs
    negative = torch.randn_like(context)
    with torch.no_grad():
        denoised = CFGDenoiser(wan, context, negative, cfg=5.0, batch_cfg=batch_cfg)(x, t)
        cond, uncond = wan(x, 1000 * t, context), wan(x, 1000 * t, negative)
        expected = x - t.view(-1, 1, 1, 1, 1) * (uncond + 5.0 * (cond - uncond))
    torch.testing.assert_close(denoised, expected, rtol=1e-5, atol=1e-5)


def test_teacher_sampler_is_plain_euler(wan, inputs):
    _, _, context = inputs
    negative = torch.randn_like(context)
    with torch.no_grad():
        ours = generate_teacher(wan, context, negative, LATENT, seed=2, steps=3, cfg=4.0, shift=3.0)
        x = torch.randn(LATENT, generator=torch.Generator().manual_seed(2))
        sig = teacher_sigmas(3, 3.0).tolist()
        for a, b in zip(sig[:-1], sig[1:], strict=True):
            tt = torch.full((LATENT[0],), a)
            c, u = wan(x, 1000 * tt, context), wan(x, 1000 * tt, negative)
            x = x - (a - b) * (u + 4.0 * (c - u))
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
