"""A local sweep's Ray listens on loopback only: GCS, raylet, workers, dashboard and its agents.

Read from /proc (Linux): the listening TCP sockets of every process of the cluster (those whose command
line names the cluster's temp folder, and their descendants).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

import pytest
import ray

from busray.configtools import ConfigError
from busray.sweep.cluster import AUTH_LOGGER, _drop_token_auth_notice
from busray.experiment import ResourcesSpec
from busray.sweep.placement import check_resources

pytestmark = [pytest.mark.ray]
LISTEN = "0A"


def _pids() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for every process."""
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out[int(proc.name)] = (ppid, cmdline)
    return out


def _cluster_pids(temp_dir: str) -> set[int]:
    procs = _pids()
    found = {pid for pid, (_, cmd) in procs.items() if temp_dir in cmd}
    while True:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in found} - found
        if not more:
            return found
        found |= more


def _listening_inodes() -> dict[str, str]:
    """socket inode -> local address, for every listening TCP socket (IPv4 and IPv6)."""
    out = {}
    for name, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                out[fields[9]] = _address(fields[1].split(":")[0], width)
    return out


def _address(hex_ip: str, width: int) -> str:
    raw = bytes.fromhex(hex_ip)
    # /proc/net/tcp* prints each 32-bit word in host (little-endian) order
    data = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(data)
    return str(getattr(address, "ipv4_mapped", None) or address)


def _sockets_of(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def test_local_cluster_listens_on_loopback_only(local_ray):
    @ray.remote
    def touch() -> int:  # start a worker process too
        return 1

    assert ray.get(touch.remote()) == 1
    listening = _listening_inodes()
    seen = []
    for pid in _cluster_pids(local_ray) | {os.getpid()}:
        for inode in _sockets_of(pid) & set(listening):
            seen.append((pid, listening[inode]))
    assert len({pid for pid, _ in seen}) >= 3, seen  # gcs, raylet, dashboard at least
    for pid, address in seen:
        assert ipaddress.ip_address(address).is_loopback, f"pid {pid} listens on {address}"


@pytest.mark.parametrize("resources, message", [
    ({"gpus_per_worker": 1.0}, r"resources.gpus_per_worker: a trial needs 1 GPU .* has 0 GPU; try --set resources.gpus_per_worker=0"),
    ({"cpus_per_worker": 3.0}, r"resources.cpus_per_worker: a trial needs 3 CPU .* has 2 CPU; try --set resources.cpus_per_worker=2"),
    ({"workers": 4, "cpus_per_worker": 1.0}, r"a trial needs 4 CPU \(4 worker\(s\) x 1\) .* try --set resources.workers=2"),
])
def test_preflight_refuses_a_trial_the_cluster_cannot_place(local_ray, short_dir, resources, message):
    from busray.ablation import run_ablation
    from busray.configtools import ConfigError
    from busray.results import ResultsStore

    with pytest.raises(ConfigError, match=message):
        run_ablation({"kind": "ablation", "name": "pre", "base": {"train": {"epochs": 1}}, "variants": {"a": {}},
                      "seeds": [0], "resources": resources}, storage=short_dir, progress=False)
    assert ResultsStore(short_dir).runs().empty  # refused before any trial ran
    assert not (Path(short_dir) / "pre").exists()  # and leaving no state: the fixed command just runs


@pytest.mark.parametrize("resources, counts, have, message", [
    # the GPU preset busi_gpu.yaml on a 2-core CPU machine: both shortfalls, both fixes, one line
    ({"workers": 2, "cpus_per_worker": 4.0, "gpus_per_worker": 1.0}, [2], {"CPU": 2.0},
     "resources.cpus_per_worker, resources.gpus_per_worker: a trial needs 8 CPU (2 worker(s) x 4) and 2 GPU "
     "(2 worker(s) x 1) but the Ray cluster has 2 CPU and 0 GPU; try --set resources.cpus_per_worker=1 "
     "--set resources.gpus_per_worker=0"),
    ({"gpus_per_worker": 0.25}, [1], {"CPU": 16.0, "GPU": 0.0},
     "resources.gpus_per_worker: a trial needs 0.25 GPU (1 worker(s) x 0.25) but the Ray cluster has 0 GPU; "
     "try --set resources.gpus_per_worker=0"),
    ({"workers": 8, "cpus_per_worker": 2.0, "gpus_per_worker": 1.0}, [8], {"CPU": 10.0, "GPU": 4.0},
     "a trial needs 16 CPU (8 worker(s) x 2) and 8 GPU (8 worker(s) x 1) but the Ray cluster has 10 CPU and "
     "4 GPU; try --set resources.workers=4"),
    ({"gpus_per_worker": 2.0}, [1, 3], {"CPU": 8.0, "GPU": 4.0},  # a searched worker count: its largest
     "a trial needs 6 GPU (3 worker(s) x 2) but the Ray cluster has 4 GPU; try --set resources.workers=2"),
    ({"workers": 2, "gpus_per_worker": 1.0}, [2], {"CPU": 2.0, "GPU": 1.0},
     "a trial needs 2 GPU (2 worker(s) x 1) but the Ray cluster has 1 GPU; try --set resources.workers=1"),
])
def test_an_unplaceable_trial_is_one_line_with_every_fix(resources, counts, have, message):
    with pytest.raises(ConfigError) as err:
        check_resources(ResourcesSpec(**resources), counts, [have])
    assert str(err.value).endswith(message) and "\n" not in str(err.value)


def test_a_trial_that_fits_passes():
    assert check_resources(ResourcesSpec(workers=2, cpus_per_worker=1.0, gpus_per_worker=0.5), [1, 2],
                           [{"CPU": 2.0, "GPU": 1.0}]) is None


@pytest.mark.parametrize("message, shown", [
    ("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.", False),
    ("Token authentication is disabled for this Ray cluster. Anyone with network access ...", True),
])
def test_only_rays_token_default_notice_is_dropped(message, shown):
    record = logging.LogRecord(AUTH_LOGGER, logging.WARNING, __file__, 1, message, None, None)
    assert _drop_token_auth_notice(record) is shown
