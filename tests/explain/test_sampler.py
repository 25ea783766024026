"""The sampler's update rules against diffusers' own schedulers, and its gradients."""

import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler

from dxray.explain.sampler import SamplerConfig, decode, draw_noise, sample, timesteps
from dxray.models.build import GeneratorArch, build_generator


def test_lcm_timesteps_match_diffusers():
    sched = LCMScheduler()
    for k in (1, 2, 4, 8):
        sched.set_timesteps(k)
        assert timesteps("lcm", k, 1000) == sched.timesteps.tolist()


def test_ddim_trailing_timesteps_start_from_pure_noise():
    sched = DDIMScheduler(timestep_spacing="trailing")
    for k in (1, 2, 4):
        sched.set_timesteps(k)
        assert timesteps("ddim", k, 1000) == sched.timesteps.tolist()
    assert timesteps("ddim", 1, 1000) == [999]


def test_noise_per_row_independent_of_batch():
    both = draw_noise((4, 8, 8), 3, [5, 9])
    alone = draw_noise((4, 8, 8), 3, [9])
    assert torch.equal(both[1], alone[0])
    assert not torch.equal(both[0], both[1])


def _reference(gen, cond, noise, kind, monkeypatch):
    """The same sampling through diffusers' stateful `scheduler.step`."""
    sched = gen.scheduler
    if kind == "ddim":
        # SD configs turn clip_sample off (latents are not in [-1, 1]); so does our sampler.
        sched = DDIMScheduler.from_config(
            sched.config, timestep_spacing="trailing", clip_sample=False
        )
    sched.set_timesteps(noise.shape[1])
    x = noise[:, 0]
    w_emb = None
    if gen.distilled_guidance:
        from dxray.explain.sampler import guidance_embedding

        w_emb = guidance_embedding(torch.full((x.shape[0],), 7.0), 8)
    for i, t in enumerate(sched.timesteps):
        out = gen.unet(x, t, encoder_hidden_states=cond, timestep_cond=w_emb).sample
        if kind == "lcm":
            # LCMScheduler draws its re-noising from `generator`; feed it our pre-drawn noise.
            step_noise = noise[:, i + 1] if i + 1 < noise.shape[1] else torch.zeros_like(x)
            monkeypatch.setattr(
                "diffusers.schedulers.scheduling_lcm.randn_tensor",
                lambda *a, _n=step_noise, **k: _n,
            )
            res = sched.step(out, t, x)
            x = res.prev_sample if i + 1 < noise.shape[1] else res.denoised
        else:
            res = sched.step(out, t, x, eta=0.0)
            x = res.prev_sample if i + 1 < noise.shape[1] else res.pred_original_sample
    return x


@pytest.mark.parametrize("kind", ["lcm", "ddim"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_sampler_matches_diffusers_scheduler_step(kind, prediction, monkeypatch):
    gen = build_generator(
        GeneratorArch(scheduler=kind, prediction_type=prediction, tiny_decoder_channels=None),
        seed=1,
    )
    cond = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0))
    # 4 steps: diffusers' DDIM steps back by 1000 // K, which is the next visited timestep
    # only when K divides 1000; our sampler always steps to the next visited timestep.
    noise = draw_noise(gen.latent_shape, 4, [0, 1])
    with torch.no_grad():
        ours = sample(gen, cond, noise, SamplerConfig(kind=kind, steps=4))
        ref = _reference(gen, cond, noise, kind, monkeypatch)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["lcm", "ddim"])
def test_sampler_gradient_matches_finite_differences_float64(kind):
    gen = build_generator(GeneratorArch(scheduler=kind), seed=2).to(dtype=torch.float64)
    noise = draw_noise(gen.latent_shape, 2, [3]).double()
    cond = torch.randn(1, 16, 16, dtype=torch.float64, requires_grad=True)

    def f(c):
        return decode(gen, sample(gen, c, noise, SamplerConfig(kind=kind, steps=2)), tiny=True)

    assert torch.autograd.gradcheck(f, (cond,), eps=1e-6, atol=1e-5, fast_mode=True)


def _grad(gen, mode, steps, checkpoint=False):
    noise = draw_noise(gen.latent_shape, steps, [4])
    cond = torch.randn(1, 16, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
    cfg = SamplerConfig(steps=steps, grad_mode=mode, checkpoint=checkpoint)
    decode(gen, sample(gen, cond, noise, cfg), checkpoint=checkpoint).square().sum().backward()
    return cond.grad


def test_grad_modes(tiny_generator):
    # With one step the three modes are the same computation.
    one = [_grad(tiny_generator, m, 1) for m in ("full", "detached", "last")]
    torch.testing.assert_close(one[0], one[1])
    torch.testing.assert_close(one[0], one[2])
    # With several steps they differ, and all are finite and non-zero.
    many = [_grad(tiny_generator, m, 3) for m in ("full", "detached", "last")]
    for g in many:
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert not torch.allclose(many[0], many[1])
    assert not torch.allclose(many[1], many[2])


def test_checkpointing_gives_the_same_gradient(tiny_generator):
    plain = _grad(tiny_generator, "full", 3)
    recomputed = _grad(tiny_generator, "full", 3, checkpoint=True)
    torch.testing.assert_close(plain, recomputed, atol=1e-6, rtol=1e-5)


def test_guidance_needs_uncond_on_plain_unet():
    gen = build_generator(GeneratorArch(scheduler="ddim", time_cond_proj_dim=None), seed=0)
    cond = torch.zeros(1, 16, 16)
    noise = draw_noise(gen.latent_shape, 1, [0])
    with pytest.raises(ValueError, match="uncond"):
        sample(gen, cond, noise, SamplerConfig(guidance_scale=3.0))
    out = sample(gen, cond, noise, SamplerConfig(guidance_scale=3.0), uncond=torch.ones(1, 16, 16))
    plain = sample(gen, cond, noise, SamplerConfig(guidance_scale=1.0))
    assert out.shape == plain.shape and not torch.allclose(out, plain)


def test_decode_micro_batches_agree(tiny_generator):
    z = torch.randn(5, *tiny_generator.latent_shape)
    with torch.no_grad():
        whole = decode(tiny_generator, z)
        parts = decode(tiny_generator, z, micro_batch=2)
    torch.testing.assert_close(whole, parts, atol=1e-6, rtol=1e-5)
    assert whole.shape == (5, 3, 16, 16) and whole.min() >= 0 and whole.max() <= 1
