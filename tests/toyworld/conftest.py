"""Fixtures shared by the toy-world tests."""

import pytest

from dxray.toyworld.world import default_world


@pytest.fixture(scope="module")
def world():
    """The default world, as its YAML defines it."""
    return default_world()
