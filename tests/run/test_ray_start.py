"""An embedded Ray that times out while starting (a loaded machine) is started again, and
gives up with one clear line after its tries, leaving no temp folder behind."""

import glob
import os
import tempfile

import pytest

from dxray.run import session
from dxray.spec.model import AuditSpec


def _spec(tiny_spec):
    return AuditSpec.from_dict(tiny_spec)


def _ours() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), session.RAY_TEMP_PREFIX + "*")))


def test_a_start_that_times_out_is_tried_again(tiny_spec, monkeypatch):
    import ray

    real, calls = ray.init, []

    def slow_once(*args, **kwargs):
        calls.append(kwargs["_temp_dir"])
        if len(calls) == 1:
            raise Exception("The current node timed out during startup. This could happen ...")
        return real(*args, **kwargs)

    monkeypatch.setattr(ray, "init", slow_once)
    try:
        assert session.ensure_ray(_spec(tiny_spec)) is True
        assert ray.is_initialized() and len(calls) == 2
        assert not os.path.exists(calls[0])  # the failed try's folder is gone
        assert os.path.isdir(calls[1])  # the Ray that started uses its own
    finally:
        # (stop_ray removes the second folder; Ray's processes may still write to it as they
        # stop, which the next start's remove_stale_temp_dirs clears: tests/run/test_interrupt)
        session.stop_ray()


def _failing_init(monkeypatch, error: Exception) -> list[int]:
    """ray.init raises `error` every time; the returned list counts the calls."""
    import ray

    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        raise error

    monkeypatch.setattr(ray, "init", fail)
    return calls


def test_it_gives_up_with_one_line_after_its_tries(tiny_spec, monkeypatch):
    calls = _failing_init(monkeypatch, Exception("The current node timed out during startup."))
    before = _ours()
    with pytest.raises(RuntimeError, match=r"Ray did not start in 3 tries.*less loaded"):
        session.ensure_ray(_spec(tiny_spec))
    assert len(calls) == session.START_ATTEMPTS and _ours() <= before


def test_another_error_is_not_retried(tiny_spec, monkeypatch):
    calls = _failing_init(monkeypatch, ValueError("bad argument"))
    with pytest.raises(ValueError, match="bad argument"):
        session.ensure_ray(_spec(tiny_spec))
    assert len(calls) == 1
