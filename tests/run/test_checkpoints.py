"""Finding checkpoints for a scan: a symlink loop under a `**` watch is not followed."""

import pytest

from dxray.run import checkpoints
from dxray.run.checkpoints import find_checkpoints


def test_a_symlink_loop_under_a_recursive_glob_lists_each_checkpoint_once(tmp_path):
    ckpt = tmp_path / "runs" / "a"
    ckpt.mkdir(parents=True)
    (ckpt / "classifier.json").write_text("{}")
    (ckpt / "back").symlink_to(tmp_path / "runs")  # a link back up: a loop
    (tmp_path / "runs" / "b.safetensors").write_bytes(b"x")
    found, others = find_checkpoints(f"{tmp_path}/runs/**")
    assert sorted(c.path.name for c in found) == ["a", "b.safetensors"]
    assert len(others) < 5  # was one entry per trip round the loop (41,778 seen)


def test_a_glob_that_matches_too_much_is_refused(tmp_path, monkeypatch):
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_text("")
    monkeypatch.setattr(checkpoints, "MAX_MATCHES", 3)
    with pytest.raises(ValueError, match="matches more than 3 paths: narrow the glob"):
        find_checkpoints(f"{tmp_path}/*.txt")
