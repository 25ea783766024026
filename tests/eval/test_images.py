import pytest
import torch

from dxray.eval.images import scene_statistics, statistics_distance
from dxray.toyworld.data import sample_specs
from dxray.toyworld.scenes import render_batch
from dxray.toyworld.world import load_world


def test_real_scenes_are_closer_to_real_scenes_than_noise_is():
    world = load_world("default")
    real, _, _ = render_batch(world, sample_specs(world, 64, seed=1, mode="unbiased"))
    held, _, _ = render_batch(world, sample_specs(world, 16, seed=2, mode="unbiased"))
    noise = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    flat = torch.full((16, 3, 32, 32), 0.5)
    near = statistics_distance(held, real)
    assert near < 1.0
    assert statistics_distance(noise, real) > 10 * near
    assert statistics_distance(flat, real) > 10 * near


def test_scene_statistics_shape_and_errors():
    stats = scene_statistics(torch.zeros(2, 3, 8, 8))
    assert stats.shape == (2, 12) and float(stats.abs().sum()) == 0.0
    with pytest.raises(ValueError, match=r"\[B>=1, 3, H, W\]"):
        scene_statistics(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="at least 2"):
        statistics_distance(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
