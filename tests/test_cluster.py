"""cluster.yaml against Ray's own config schema (offline), and `ray job submit` against a real
local head: a tiny job first, then a dxray audit of a tiny zoo.

The head is loopback only (127.0.0.1, dashboard included), has token authentication on with a
token of its own in a temp dir, and runs in its own temp dir and ports. It is stopped by
signalling its own `ray start --block` process, never with `ray stop`: in Ray 2.60 `ray stop`
has no --address or --temp-dir and terminates every Ray process on the machine by name,
including other people's clusters and embedded test runs.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
SALIENT_IMAGENET = REPO / "pipelines" / "salient-imagenet.yaml"
RAY_PIN = "2.60.0"
RAY_BIN = Path(sys.executable).with_name("ray")  # the venv's: its workers run the venv's python
CLOUD_SDKS = ("boto3", "botocore", "googleapiclient", "google", "azure", "kubernetes")


# -- cluster.yaml, offline -----------------------------------------------------------------


def _config_api():
    """Ray's own config checks, as `ray up` runs them before it touches a cloud."""
    assert ray.__version__ == RAY_PIN, (
        f"ray is {ray.__version__}, these tests are pinned to {RAY_PIN} because they call "
        "private APIs (ray.autoscaler._private.util.prepare_config / validate_config) that "
        "may move or change in any release: check them in the new version, then update RAY_PIN"
    )
    from ray.autoscaler._private.util import prepare_config, validate_config

    return prepare_config, validate_config


def _load() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _prepared(config: dict) -> dict:
    """prepare_config (merge with the provider's defaults.yaml shipped in the ray wheel, merge
    setup commands, fill per-type worker limits), then validate_config (ray-schema.json plus
    cross-field checks). Neither calls the provider's bootstrap (which would need boto3 and
    AWS credentials): that is the part of `ray up` left out here."""
    prepare_config, validate_config = _config_api()
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture
def offline(monkeypatch):
    """Any socket connection or name lookup fails the test; so does importing a cloud SDK."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during offline validation: {args[1:]!r}")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    before = set(sys.modules)
    yield
    imported = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in CLOUD_SDKS)
    assert not imported, f"validation imported cloud SDKs: {imported}"


def _node_types(config: dict) -> tuple[dict, dict]:
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    gpu = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    return head, gpu


def test_cluster_yaml_passes_rays_own_schema(offline):
    raw = _load()
    config = _prepared(raw)
    assert config["provider"]["type"] == "aws"
    # prepare_config fills gaps from defaults.yaml; it must not have replaced our choices
    for key in ("max_workers", "idle_timeout_minutes", "upscaling_speed", "head_node_type"):
        assert config[key] == raw[key], key
    head, gpu = _node_types(config)
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    assert gpu, "no GPU worker type"
    for t in gpu.values():
        assert t["node_config"]["InstanceType"] and t["min_workers"] == 0
    # torch (from PyTorch's index) before dxray, on every node
    for commands in (config["head_setup_commands"], config["worker_setup_commands"]):
        torch_at = next(i for i, c in enumerate(commands) if "torch==" in c)
        dxray_at = next(i for i, c in enumerate(commands) if "pip install -q -e ~/dxray" in c)
        assert torch_at < dxray_at and "download.pytorch.org/whl/" in commands[torch_at]
    # token auth on both node types, from a file that file_mounts puts on every node
    mounted = {remote.removeprefix("~/") for remote in config["file_mounts"]}
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(c for c in commands if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start
        token_path = start.split("RAY_AUTH_TOKEN_PATH=")[1].split()[0].rstrip(";")
        assert token_path.removeprefix("$HOME/").split("/")[0] in mounted, token_path
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_cluster_can_run_the_salient_imagenet_pipeline(offline):
    """Enough GPU nodes, each big enough, for the actor pool pipelines/salient-imagenet.yaml
    asks for: otherwise its ActorPoolStrategy waits for actors that never fit."""
    want = yaml.safe_load(SALIENT_IMAGENET.read_text())["ray"]
    config = _prepared(_load())
    _, gpu = _node_types(config)
    fits = {
        name: t
        for name, t in gpu.items()
        if t["resources"]["GPU"] >= want.get("num_gpus_per_worker", 0)
        and t["resources"]["CPU"] >= want.get("num_cpus_per_worker", 1)
    }
    assert fits, f"no GPU node type fits one worker of {want}"
    per_node = {
        n: t["resources"]["GPU"] // max(1, want["num_gpus_per_worker"]) for n, t in fits.items()
    }
    capacity = sum(
        min(t["max_workers"], config["max_workers"]) * per_node[n] for n, t in fits.items()
    )
    assert capacity >= want["workers"], (capacity, want)


def _without_node_config(config: dict) -> None:
    del config["available_node_types"]["gpu_worker"]["node_config"]


def _misspelt_top_level_key(config: dict) -> None:
    config["idle_timeout_minute"] = config.pop("idle_timeout_minutes")


def _unknown_head_type(config: dict) -> None:
    config["head_node_type"] = "no_such_type"


def _fractional_gpu_count(config: dict) -> None:
    config["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5


@pytest.mark.parametrize(
    "breakage, message",
    [
        (_without_node_config, "'node_config' is a required property"),
        (_misspelt_top_level_key, "'idle_timeout_minute' was unexpected"),
        (_unknown_head_type, "`head_node_type` must be one of `available_node_types`"),
        (_fractional_gpu_count, "0.5 is not of type 'integer'"),
    ],
)
def test_a_broken_copy_fails_validation(offline, breakage, message):
    import jsonschema

    config = _load()
    breakage(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as err:
        _prepared(config)
    assert message in str(err.value)


# -- ray job submit against a local head -----------------------------------------------------


def _free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1 right now (held together, so they differ)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, direct


@dataclass
class LocalHead:
    root: Path  # the head's --temp-dir, its token and its log
    env: dict[str, str]  # what a client needs: RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH
    dashboard: str  # http://127.0.0.1:<port>, the job API
    token: str
    proc: subprocess.Popen  # `ray start --head --block`

    def ray(self, *args: str, timeout: float, env: dict | None = None):
        return subprocess.run(
            [str(RAY_BIN), *args],
            env=self.env if env is None else env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def api(self, path: str) -> dict:
        request = urllib.request.Request(
            self.dashboard + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with _no_proxy_opener().open(request, timeout=30) as response:
            return json.load(response)

    def submit(self, working_dir: Path, *entrypoint: str, timeout: float) -> str:
        """Blocking `ray job submit` (it tails the job's logs); returns what it printed after
        checking the job SUCCEEDED."""
        sid = f"dxray-test-{secrets.token_hex(4)}"
        args = ["job", "submit", "--address", self.dashboard, "--submission-id", sid]
        args += ["--working-dir", str(working_dir), "--", *entrypoint]
        try:
            done = self.ray(*args, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            self.ray("job", "stop", "--address", self.dashboard, "--no-wait", sid, timeout=120)
            out = (err.stdout or b"").decode(errors="replace")[-4000:]
            pytest.fail(f"job {sid} not done in {timeout} s; it printed:\n{out}")
        printed = done.stdout + done.stderr
        status = self.api(f"/api/jobs/{sid}")["status"]
        assert done.returncode == 0 and status == "SUCCEEDED", (status, printed[-4000:])
        return printed


def _start_command(root: Path, ports: list[int]) -> list[str]:
    gcs, dashboard, client, agent = ports
    return [
        str(RAY_BIN), "start", "--head",
        # stay in the foreground: SIGTERM to this one process stops everything it started
        "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        # fixed defaults (10001, 52365) that would clash with any other head on this machine
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=2", "--num-gpus=0", "--object-store-memory=200000000",
        f"--temp-dir={root}", "--disable-usage-stats",
    ]  # fmt: skip


def _ours(pgid: int, root: Path) -> list:
    """Live processes of the head's session (process group), or working in its temp dir (job
    drivers run in a session of their own, with their cwd in root/session_*/runtime_resources)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
            continue
        try:
            in_group = os.getpgid(p.pid) == pgid
        except OSError:
            continue
        cmdline = " ".join(p.info["cmdline"] or [])
        if in_group or str(root) in cmdline or (p.info["cwd"] or "").startswith(str(root)):
            found.append(p)
    return found


def _stop(head: LocalHead) -> list[str]:
    """Stop the head by its own process; returns the processes that outlived it (killed)."""
    proc = head.proc
    if proc.poll() is None:
        # ray start --block's SIGTERM handler drains the node, then terminates every process
        # it started (raylet first, GCS last); its workers die with their raylet.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session it leads: start_new_session
            proc.wait(timeout=30)
    deadline = time.monotonic() + 60
    while (left := _ours(proc.pid, head.root)) and time.monotonic() < deadline:
        time.sleep(1)
    described = []
    for p in left:
        try:
            described.append(f"{p.pid} {' '.join(p.cmdline())[:200]}")
            p.kill()
        except Exception:  # gone meanwhile
            pass
    return described


@pytest.fixture(scope="module")
def local_head():
    if not RAY_BIN.exists():
        pytest.skip(f"no ray CLI next to {sys.executable}")
    # A short path: Ray's unix sockets live under it, and a socket path has 107 bytes at most.
    root = Path(
        tempfile.mkdtemp(prefix="dxray-head-", dir="/tmp" if Path("/tmp").is_dir() else None)
    )
    token = secrets.token_hex(32)  # what `ray get-auth-token --generate` writes: 64 hex digits
    token_file = root / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    # Nothing from the caller's Ray settings (RAY_ADDRESS, RAY_AUTH_TOKEN...) leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_file),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # else 127.0.0.1 is replaced by the host's IP
        # The job entrypoint is a shell command run with the head's PATH: with the venv first,
        # `python` is the venv's, as in an activated venv.
        PATH=f"{RAY_BIN.parent}{os.pathsep}{env.get('PATH', '')}",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        OMP_NUM_THREADS="1",
        # On SIGTERM, ray start first drains the node for up to 30 s (for Serve replicas);
        # with nothing to hand over, that is 30 s of teardown for nothing. <= 0 skips it.
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
    )
    ports = _free_ports(4)
    log = open(root / "head.log", "wb")  # noqa: SIM115 -- closed in finally
    proc = subprocess.Popen(
        _start_command(root, ports),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, to find (and if need be end) it all
    )
    head = LocalHead(root, env, f"http://127.0.0.1:{ports[1]}", token, proc)
    try:
        deadline = time.monotonic() + 300  # ~10 s when idle; much more on a busy 2-core box
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited {proc.returncode}:\n{_tail(root / 'head.log')}")
            try:
                head.api("/api/jobs/")  # answers once the job module is up (and auth works)
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail(f"head not up in 300 s:\n{_tail(root / 'head.log')}")
                time.sleep(2)
        yield head
    finally:
        left = _stop(head)
        log.close()
        assert not left, f"processes outlived the head (killed now; logs in {root}): {left}"
        shutil.rmtree(root, ignore_errors=True)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


JOB = """\
import json, os, sys

import ray

ray.init(address="auto")  # RAY_ADDRESS, set by the job supervisor


@ray.remote
def double(x):
    return 2 * x


import dxray

print("DXRAY-JOB " + json.dumps({
    "result": ray.get(double.remote(21)),
    "prefix": sys.prefix,
    "dxray": dxray.__file__,
    "cwd": os.getcwd(),
    "auth_mode": os.environ.get("RAY_AUTH_MODE"),
}))
"""


def test_job_submit_runs_a_remote_task(local_head, tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "job.py").write_text(JOB)
    printed = local_head.submit(job_dir, "python", "job.py", timeout=300)
    line = next(ln for ln in printed.splitlines() if ln.startswith("DXRAY-JOB "))
    info = json.loads(line.removeprefix("DXRAY-JOB "))
    assert info["result"] == 42
    assert info["prefix"] == sys.prefix  # the venv's python ...
    assert Path(info["dxray"]).is_relative_to(REPO / "dxray")  # ... with dxray installed editable
    # the driver runs on the head, in the uploaded working dir, and inherits the head's auth
    assert Path(info["cwd"]).is_relative_to(local_head.root) and "working_dir_files" in info["cwd"]
    assert info["auth_mode"] == "token"


def test_a_client_without_the_token_is_refused(local_head):
    no_auth = {k: v for k, v in local_head.env.items() if not k.startswith("RAY_AUTH_")}
    done = local_head.ray(
        "job", "list", "--address", local_head.dashboard, env=no_auth, timeout=120
    )
    assert done.returncode != 0 and "Missing authentication token" in done.stdout + done.stderr
    wrong = local_head.root / "wrong-token"
    wrong.write_text(secrets.token_hex(32))
    env = {**local_head.env, "RAY_AUTH_TOKEN_PATH": str(wrong)}
    done = local_head.ray("job", "list", "--address", local_head.dashboard, env=env, timeout=120)
    assert done.returncode != 0 and "Invalid authentication token" in done.stdout + done.stderr


def _build_tiny_zoo(root: Path) -> None:
    """The tiny zoo, written into the job's working dir so the models travel with the job."""
    from dxray.toyworld.zoo import build_tiny_zoo

    build_tiny_zoo(root)


TARGETS = 5 + 1  # the toy world's 5 classes and 1 listed unit, one seed each


def test_job_submit_runs_a_dxray_audit(local_head, tmp_path):
    from dxray.catalog.views import connect

    job_dir = tmp_path / "job"
    _build_tiny_zoo(job_dir / "zoo")
    catalog = tmp_path / "catalog"  # absolute: the driver's cwd is a temp copy of job_dir
    spec = {
        "name": "tiny-cluster",
        # relative: resolved in the driver's and the workers' cwd, the uploaded working dir
        "generator": "zoo/generator",
        "classifier": "zoo/classifier",
        "segmenter": "zoo/segmenter",
        "targets": {"classes": "all", "units": {"units": ["penultimate:3"]}, "seeds": [0]},
        "engine": {
            "iterations": 2,
            "template": "a {}",
            "sampler": {"steps": 1},
            "batch_size": 4,
            "stop_prob": None,
        },
        "judge": {"probes": ["water"]},
        "output": {"catalog": str(catalog)},
        "ray": {"address": "auto", "workers": 1, "num_cpus_per_worker": 1},
    }
    (job_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    printed = local_head.submit(
        job_dir, "python", "-m", "dxray.cli", "audit", "spec.yaml", timeout=600
    )
    assert f"{TARGETS} computed, 0 already in the catalog, {TARGETS} in all" in printed
    con = connect(catalog, read_only=True)
    try:
        for view in ("explanations", "verdicts", "images"):
            assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(TARGETS,)], view
        assert con.sql("SELECT name, status FROM runs").fetchall() == [("tiny-cluster", "finished")]
        statuses = con.sql("SELECT DISTINCT status FROM explanations").fetchall()
        assert ("error",) not in statuses, statuses
    finally:
        con.close()
