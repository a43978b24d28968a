"""A multi-node Ray cluster on one machine for the tests: a head and worker nodes, each a ``ray start
--block`` process group of its own (ended by killing the group, never ``ray stop``, which would stop
the test session's own Ray too); ``../shared/spec/cluster_notes.md`` has the measured pitfalls.

Each node gets its own ports and its own bucket mirror (``BUSRAY_STORAGE_CACHE``): as far as busray can
tell, separate machines. A node may be started in its own mount namespace (``unshare -m``, root) with a
private empty folder bind-mounted over a path: the same path, a different disk, as on a machine that
lacks the shared mount.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_unshare() -> bool:
    """Whether this process may start a node in its own mount namespace (root, and a kernel that lets it)."""
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class RayNodes:
    """A head (no CPUs: it runs no trial) and the worker nodes :meth:`add_worker` starts."""
    env: dict[str, str]
    temp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="brmn", dir="/tmp")))
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    port: int = 0
    dashboard: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_head(self) -> "RayNodes":
        self.port, self.dashboard = free_port(), free_port()
        self._start("head", ["--head", "--port", str(self.port), "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(self.dashboard), "--num-cpus", "0",
                             "--resources", '{"busray_trial_slot": 4}', "--temp-dir", str(self.temp)])
        self.wait_for_nodes(1)
        return self

    def add_worker(self, name: str, cpus: int = 1, hide: Path | None = None) -> None:
        """A worker node ``name``; ``hide``: a path this node sees as an empty private folder."""
        args = ["--address", self.address, "--num-cpus", str(cpus), "--resources", json.dumps({f"node_{name}": 1})]
        env = {"BUSRAY_STORAGE_CACHE": str(self.temp / f"mirror-{name}")}
        self._start(name, args, env, hide)
        self.wait_for_nodes(len(self.procs))

    def _start(self, name: str, args: list[str], env: dict | None = None, hide: Path | None = None) -> None:
        ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                 "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                 "--min-worker-port", "0", "--max-worker-port", "0"]
        command = [str(BIN / "ray"), "start", "--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                   *args, *ports]
        if hide is not None:
            private = self.temp / f"private-{name}"
            private.mkdir()
            hide.mkdir(parents=True, exist_ok=True)
            script = f'mount --bind {private} {hide} && exec "$@"'
            command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *command]
        log = open(self.temp / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(command, env={**self.env, **(env or {})}, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def alive_nodes(self) -> list[dict]:
        url = f"http://127.0.0.1:{self.dashboard}/api/v0/nodes?limit=100"
        with urllib.request.urlopen(url, timeout=5) as answer:
            nodes = json.loads(answer.read())["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name}: ray start exited\n" + self.log(name)[-3000:]
            try:
                if len(self.alive_nodes()) >= count:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{count} Ray nodes did not come up in {timeout:.0f} s")

    def node_of(self, name: str) -> str:
        """The node id of worker ``name`` (by its custom resource)."""
        for node in self.alive_nodes():
            if f"node_{name}" in (node.get("resources_total") or {}):
                return node["node_id"]
        raise KeyError(name)

    def kill(self, name: str) -> None:
        """SIGKILL a node's whole process group: its raylet and the workers it started."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def log(self, name: str) -> str:
        path = self.temp / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def stop(self) -> None:
        for name in list(self.procs)[::-1]:
            self.kill(name)
        shutil.rmtree(self.temp, ignore_errors=True)
