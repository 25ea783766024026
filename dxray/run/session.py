"""The Ray session of a command, and its model hosts: one per worker, loaded once, every stage.

    with ray_session(spec) as session:              # Ray starts on first use, stops at the end
        for stage, rows in session.map_stages(spec, [("targets", todo, 16),
                                                     ("pool", jobs, 32)]): ...
        for rows in session.map(spec, "renders", jobs, batch_size=32): ...

Stages are Ray Data pipelines whose batches go to long-lived model hosts (stages that depend on
nothing from each other share one pipeline, so no host waits at a stage's end):

    rows --from_blocks (one block per batch)--> map_batches(serve_batch)     Ray Data tasks
         --> Dispatcher: the batch waits for a free host (one async actor, no CPU)
         --> ModelHost actors, one per worker (`ray.workers`; `num_cpus_per_worker` CPUs and
             torch threads, `num_gpus_per_worker` GPUs): the generator, the classifier and the
             segmenter stay resident for the whole session
         --iter_batches--> the driver writes the catalog as batches come back

A session serves every stage of every audit run inside it: an audit's targets, vocabulary
renders, pool and with-object renders; an evaluation's audits; a scan's checkpoints, where only
the classifier changes and only the classifier is loaded again (`ModelHost.use`). A spec with
another generator or segmenter, or other worker resources, gets new hosts. A host that dies
(preempted node, OOM kill) is restarted by Ray, loads its models again and retries its batch
(`ray.max_retries`). Sessions nest: `run_audit` inside an evaluation's or a scan's session uses
that session's Ray and hosts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from dxray.spec.model import AuditSpec

log = logging.getLogger("dxray.run")
Key = Callable[[dict[str, Any]], Any]  # what makes two rows of a stage one work (see map_stages)

# How a host's idle torch threads wait: OpenMP's default spins, and a host with two threads on
# cores that something else uses (Ray's processes, another host) then ran ~5x slower; passive
# threads sleep instead. Measured on the 2-core build machine, two hosts' processes side by
# side, 14 targets x 12 iterations each: 1 thread 9.5 s, 2 threads spinning 46 s, 2 threads
# passive 10.1 s with the 2-thread results bit for bit (docs/BENCHMARKS.md). The driver's
# OMP_WAIT_POLICY, if set, is passed on instead.
OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
# An embedded Ray whose raylet does not register within Ray's fixed 30 s (a loaded machine:
# seen on the 2-core build machine beside an evaluation and a sweep) is stopped and started
# again, up to this many tries in all.
START_ATTEMPTS = 3
STARTUP_TIMEOUT = "timed out during startup"  # Ray 2.60's message (ray/_private/node.py)
# The temp folder of the Ray this process started (embedded), removed by `stop_ray`.
ray_temp_dir: str | None = None
# The session open in this process (`ray_session`): an inner one is the same session.
_current: Session | None = None


@contextmanager
def ray_session(spec: AuditSpec) -> Iterator[Session]:
    """A session whose Ray (`spec.ray`: embedded or a cluster) starts when its first stage
    runs; on exit its hosts are stopped, and Ray too if this session started it. Inside another
    session, that one."""
    global _current
    if _current is not None:
        yield _current
        return
    session = _current = Session(spec)
    try:
        yield session
    finally:
        _current = None
        session.close()


class Session:
    """Ray and the model hosts of one command (see the module docstring)."""

    def __init__(self, spec: AuditSpec):
        self.spec = spec  # where Ray runs: its `ray` section
        self.started_ray = False  # this session started Ray (and stops it)
        self._running = False
        self._hosts: list[Any] = []
        self._dispatcher: Any = None
        self._host_key: tuple | None = None
        self._progress_bars: bool | None = None  # Ray Data's setting before this session

    def map(
        self,
        spec: AuditSpec,
        stage: str,
        rows: list[dict[str, Any]],
        batch_size: int,
        *,
        classifier_sha256: str | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Serve `rows` to stage `stage` of the hosts (`dxray.run.host.stages`) in batches of
        at most `batch_size` consecutive rows (`batch_bounds`), for `spec` (`ModelHost.use`);
        yield each batch's result rows as it comes back."""
        parts = [(stage, rows, batch_size)]
        for _, results in self.map_stages(spec, parts, classifier_sha256=classifier_sha256):
            yield results

    def map_stages(
        self,
        spec: AuditSpec,
        parts: Sequence[tuple[str, list[dict[str, Any]], int] | tuple[str, list, int, Key]],
        *,
        classifier_sha256: str | None = None,
    ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Serve stages that depend on nothing from each other in one pipeline: `parts` are
        (stage, rows, batch size) or (stage, rows, batch size, key), their batches queued in
        that order (put the longest first); yield (stage, result rows) per batch as it comes
        back. No host waits at the end of one stage while another has work. With `key(row)`,
        a batch holds at most `batch size` distinct keys and every row of each (rows with one
        key must be adjacent: the stage computes a key once)."""
        parts = [(p[0], p[1], max(1, p[2]), p[3] if len(p) > 3 else None) for p in parts if p[1]]
        if not parts:
            return
        import pyarrow as pa
        import ray

        dispatcher, hosts = self._hosts_for(spec, classifier_sha256)
        # One block per batch, made here: a batch holds the same rows however many hosts
        # there are (a target's result does not depend on how wide the audit runs), and no
        # task has to wait for a CPU the hosts hold (`from_arrow` runs one per block).
        blocks = []
        for stage, rows, size, key in parts:
            keys = list(range(len(rows))) if key is None else [key(row) for row in rows]
            for start, end in grouped_bounds(keys, size):
                batch = pa.Table.from_pylist(rows[start:end])
                blocks.append(batch.append_column(STAGE, pa.array([stage] * batch.num_rows)))
        results = ray.data.from_blocks(blocks).map_batches(
            serve_batch,
            fn_kwargs={"dispatcher": dispatcher, "spec": spec.to_dict(),
                       "classifier_sha256": classifier_sha256},
            batch_size=None,
            batch_format="numpy",
            # The tasks only wait for a host; two per host keep the next batch at the door.
            compute=ray.data.TaskPoolStrategy(size=min(2 * hosts, len(blocks))),
            num_cpus=0,
        )  # fmt: skip
        for columns in results.iter_batches(batch_size=None, batch_format="numpy"):
            stage = str(columns.pop(STAGE)[0])
            n = len(next(iter(columns.values())))
            yield stage, [{k: _py(v[i]) for k, v in columns.items()} for i in range(n)]

    def model_loads(self) -> Counter[str]:
        """Models the session's hosts have loaded, by role, summed over the hosts."""
        if not self._hosts:
            return Counter()
        import ray

        loads: Counter[str] = Counter()
        for counts in ray.get([host.model_loads.remote() for host in self._hosts]):
            loads.update(counts)
        return loads

    @property
    def workers(self) -> int:
        """How many hosts serve now."""
        return len(self._hosts)

    def close(self) -> None:
        """Stop the hosts, and Ray if this session started it."""
        if not self._running:
            return
        import ray

        self._stop_hosts()
        if self._progress_bars is not None:
            ray.data.DataContext.get_current().enable_progress_bars = self._progress_bars
        if self.started_ray:
            stop_ray()
        self._running = False

    def _hosts_for(self, spec: AuditSpec, classifier_sha256: str | None) -> tuple[Any, int]:
        """The dispatcher and the number of hosts that serve `spec`: the running ones, unless
        it needs other models or other resources."""
        from dxray.run.host import ModelHost, resident_models

        r = spec.ray
        key = (resident_models(spec), r.workers, r.num_cpus_per_worker, r.num_gpus_per_worker,
               r.max_retries)  # fmt: skip
        if self._hosts and key == self._host_key:
            return self._dispatcher, len(self._hosts)
        self._start()
        self._stop_hosts()
        import ray

        needed = r.workers * r.num_cpus_per_worker
        cpus = ray.cluster_resources().get("CPU", 0)
        if self.started_ray and needed > cpus:
            # The Ray started here was sized for an earlier spec (a sweep's stability rerun
            # with 2 workers of 2 threads after audits of 2 x 1): hosts it cannot place would
            # wait forever, and every batch with them. Start it again, as large as this spec.
            log.info("restarting the embedded Ray with %d CPUs for %d hosts", needed, r.workers)
            self.close()
            self.spec = spec
            self._start()
        elif needed > cpus:
            log.warning(
                "the cluster has %g CPUs and %d hosts of %d CPUs need %d: the audit waits until "
                "Ray can place them (an autoscaler adding nodes); lower ray.workers otherwise",
                cpus, r.workers, r.num_cpus_per_worker, needed,
            )  # fmt: skip

        resources = {
            "num_cpus": r.num_cpus_per_worker,
            "num_gpus": r.num_gpus_per_worker,
            # A host that dies is restarted (its models load again) and its batch retried.
            "max_restarts": r.max_retries,
            "max_task_retries": r.max_retries,
            "runtime_env": {"env_vars": {"OMP_WAIT_POLICY": OMP_WAIT_POLICY}},
        }
        # Named, so that the dispatcher finds them by name: a restarted dispatcher too, and
        # no actor handle goes through the object store as a constructor argument
        names = [f"dxray-host-{uuid.uuid4().hex[:12]}" for _ in range(r.workers)]
        host = ray.remote(ModelHost)
        self._hosts = [
            host.options(name=name, **resources).remote(
                spec.to_dict(), threads=r.num_cpus_per_worker, classifier_sha256=classifier_sha256
            )
            for name in names
        ]
        self._dispatcher = ray.remote(Dispatcher).options(num_cpus=0, max_restarts=-1).remote(names)
        self._host_key = key
        return self._dispatcher, len(self._hosts)

    def _start(self) -> None:
        if self._running:
            return
        import ray

        self.started_ray = ensure_ray(self.spec)
        self._running = True
        with warnings.catch_warnings():
            # Ray 2.60's own default context sets its deprecated fields, each with a warning
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.data.DataContext.get_current()
        # The audit draws one bar per stage itself (dxray.run.progress)
        self._progress_bars, context.enable_progress_bars = context.enable_progress_bars, False

    def _stop_hosts(self) -> None:
        import ray

        for actor in [*self._hosts, *([self._dispatcher] if self._dispatcher else [])]:
            ray.kill(actor)
        self._hosts, self._dispatcher, self._host_key = [], None, None


class Dispatcher:
    """Hands each batch to a free host and relays its rows back: a host holds one batch at a
    time, so batches go where hosts are free (a slow batch never holds up a queue behind it)."""

    def __init__(self, hosts: list[str]):
        self.hosts = hosts  # the hosts' actor names
        self.free: asyncio.Queue | None = None

    async def serve(self, stage: str, rows: list[dict], spec: dict, classifier_sha256: str | None):
        if self.free is None:  # made in the actor's event loop
            import ray

            self.free = asyncio.Queue()
            for name in self.hosts:
                self.free.put_nowait(ray.get_actor(name))
        host = await self.free.get()
        try:
            return await host.serve.remote(stage, rows, spec, classifier_sha256)
        finally:
            self.free.put_nowait(host)


STAGE = "__stage__"  # the column that says which stage a block's rows are for


def batch_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of a stage's `n` rows, at most `size` each, cut as dxray's
    pipeline has always cut them: Ray Data's `from_items` made ceil(n / size) near-equal
    blocks, consecutive blocks were gathered until they held `size` rows, and each gathering
    was cut into `size`-row batches. A row's batch decides its rounding (a batch's kernels
    depend on its size), so keeping the cut keeps every result bit-identical to the earlier
    versions'. Mostly runs of `size`: 136 rows of 16 are 16, 16, 14, 16, 14, 16, 14, 16, 14."""
    blocks = max(1, -(-n // size))
    small, larger = divmod(n, blocks)
    bounds, start, gathered = [], 0, 0
    for i in range(blocks):
        gathered += small + (i < larger)
        if gathered >= size or i == blocks - 1:
            end = start + gathered
            bounds += [(at, min(at + size, end)) for at in range(start, end, size)]
            start, gathered = end, 0
    return bounds


def grouped_bounds(keys: Sequence[Any], size: int) -> list[tuple[int, int]]:
    """`batch_bounds` over the distinct values of `keys` (equal keys adjacent): (start, end)
    of batches of rows that hold at most `size` distinct keys, never splitting one. With
    distinct keys, exactly `batch_bounds(len(keys), size)`."""
    starts = [i for i, k in enumerate(keys) if i == 0 or k != keys[i - 1]]
    if len(set(keys)) != len(starts):
        raise ValueError("rows with the same key must be adjacent (dxray.run.targets.by_work)")
    ends = [*starts[1:], len(keys)]
    return [(starts[a], ends[b - 1]) for a, b in batch_bounds(len(starts), size)] if keys else []


def serve_batch(
    batch: dict[str, np.ndarray], *, dispatcher: Any, spec: dict, classifier_sha256: str | None
) -> dict[str, np.ndarray]:
    """One Ray Data batch through a model host: numpy columns -> rows -> result columns."""
    import ray

    stage = str(batch.pop(STAGE)[0])
    n = len(next(iter(batch.values())))
    rows = [{key: plain(key, values[i]) for key, values in batch.items()} for i in range(n)]
    out = ray.get(dispatcher.serve.remote(stage, rows, spec, classifier_sha256))
    results = {key: column([row[key] for row in out]) for key in out[0]}
    return {**results, STAGE: column([stage] * len(out))}


INT_KEYS = ("class_index", "channel", "seed")


def plain(key: str, value: Any) -> Any:
    """numpy scalars -> Python. Ray Data turns a nullable int column into floats with NaN."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    if key in INT_KEYS and value is not None:
        return int(value)
    return value


def column(values: list[Any]) -> np.ndarray:
    """A column of Python objects as Ray Data takes it."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _py(value: Any) -> Any:
    """Ray Data's numpy batches -> plain Python. A None in a column may come back as NaN (the
    hosts never emit NaN themselves: non-finite numbers are written as None)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


RAY_TEMP_PREFIX = "dxray-ray-"
OWNER_FILE = "dxray-owner.pid"  # in an embedded Ray's temp folder: the process that made it
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}


class Interrupted(BaseException):  # noqa: N818 - not an error: the user or the system asked
    """SIGTERM (cron, Kubernetes and CI timeouts) or SIGINT (Ctrl-C) during a command that
    runs Ray: raised in the main thread so that every `finally` runs (hosts stopped, Ray shut
    down, its temp folder removed, the run marked); `dxray` prints one line and exits 143/130."""

    def __init__(self, signal_name: str):
        super().__init__(f"interrupted by {signal_name}: rerun the same command to resume")
        self.exit_code = EXIT_CODES.get(signal_name, 1)


def _interrupt(signum: int, _frame) -> None:
    import signal

    raise Interrupted(signal.Signals(signum).name)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Around `ray.init`: SIGTERM and SIGINT wait (blocked) while Ray starts and installs its
    own SIGTERM handler (a silent exit 15 that skips every cleanup; its native one prints
    stack dumps), then dxray's handlers take over and a signal that came meanwhile is
    delivered to them. Threads Ray starts meanwhile keep them blocked, so the main thread
    receives them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        for sig in held:
            signal.signal(sig, _interrupt)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def remove_stale_temp_dirs(temp_root: str | None = None) -> list[str]:
    """Remove the temp folders of embedded Rays whose process is gone (killed with -9, or a
    machine that lost power), found by their owner file; returns what was removed."""
    root = temp_root or tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(root) if n.startswith(RAY_TEMP_PREFIX)]
    except OSError:
        return removed
    for name in names:
        folder = os.path.join(root, name)
        try:
            with open(os.path.join(folder, OWNER_FILE)) as handle:
                pid = int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not ours to judge: no owner recorded
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def stop_ray() -> None:
    """Shut down the Ray this process started and remove its temp folder (sessions, logs,
    sockets), so that audits leave nothing behind in the system's temp directory."""
    import ray

    global ray_temp_dir
    ray.shutdown()
    if ray_temp_dir is not None:
        shutil.rmtree(ray_temp_dir, ignore_errors=True)
        ray_temp_dir = None


def ensure_ray(spec: AuditSpec) -> bool:
    """Connect to the spec's cluster, or start Ray inside this process. True if started here
    (then `stop_ray` ends it)."""
    global ray_temp_dir
    import ray

    if ray.is_initialized():
        return False
    address = spec.ray.address
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = "auto"  # inside `ray job submit`
    if address is not None:
        with _signals_held():
            ray.init(address=address, log_to_driver=True)
        return True
    needed = spec.ray.workers * spec.ray.num_cpus_per_worker
    # Loopback only, and a temp dir of our own: an embedded run must not attach to (or
    # advertise) anything else on this machine. Measured on Ray 2.60: with a loopback node
    # address alone, the GCS, raylet and workers still listen on every interface and the
    # agents on the host's address too, because Ray decides "single machine" from
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, read when `ray` is imported. Its child processes
    # read the variable; this process has read it already, so its constant is set too.
    _loopback_only()
    remove_stale_temp_dirs()
    for attempt in range(1, START_ATTEMPTS + 1):
        ray_temp_dir = tempfile.mkdtemp(prefix=RAY_TEMP_PREFIX)
        with open(os.path.join(ray_temp_dir, OWNER_FILE), "w") as handle:
            handle.write(f"{os.getpid()}\n")
        try:
            with _signals_held():
                ray.init(
                    address="local",
                    _node_ip_address="127.0.0.1",
                    _temp_dir=ray_temp_dir,
                    include_dashboard=False,
                    num_cpus=max(needed, os.cpu_count() or 1),
                    num_gpus=None,
                    log_to_driver=True,
                )
            return True
        except Exception as err:
            stop_ray()  # whatever started is stopped, its temp folder removed
            if STARTUP_TIMEOUT not in str(err):
                raise
            log.warning("Ray did not start in time (try %d of %d)", attempt, START_ATTEMPTS)
        except BaseException:  # interrupted while starting: nobody else will stop this Ray
            stop_ray()
            raise
    raise RuntimeError(
        f"Ray did not start in {START_ATTEMPTS} tries: its raylet must register within Ray's "
        "fixed 30 s, and this machine is too busy for that now. Rerun when it is less loaded "
        "(the audit resumes)"
    )


def _loopback_only() -> None:
    """Make the Ray about to start here listen on 127.0.0.1 only (see `ensure_ray`)."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
