"""Connecting to Ray: a private loopback cluster for one sweep, or the cluster a ``ray job submit`` runs in.

Ray 2.60 facts this module works with (read from the installed package):

- **Token auth is on by default for a new local cluster.** ``ray.init()`` without an address and with
  ``RAY_AUTH_MODE`` unset switches to ``token`` mode and writes a random token to ``~/.ray/auth_token``.
  ``ray start --head`` enables token mode only if a token exists (``ray get-auth-token --generate``) or
  ``RAY_AUTH_MODE=token``; clients then need the same token (the file, ``RAY_AUTH_TOKEN`` or
  ``RAY_AUTH_TOKEN_PATH``). ``RAY_AUTH_MODE=disabled`` opts out (the tests do, so they never touch
  ``~/.ray``). busray does not change the mode: it is the operator's security decision. It only drops
  Ray's console notice that the default applies (``--verbose`` shows it).
- **Loopback.** ``ray.init`` turns a node IP of 127.0.0.1 into the machine's routable address, and its
  gRPC servers (GCS, raylet, workers) then listen on every interface. Ray's own single-machine mode
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, meant for laptops) keeps the node on 127.0.0.1, and every
  server, dashboard and agent included, listens on loopback only; busray starts local clusters that
  way (tested). ``docs/SECURITY.md`` says what listens where and how to expose a cluster safely.
- **Trial slots.** A local cluster gets ``busray_trial_slot = max_concurrent``; each trial takes one slot.
  On an existing cluster started without it (``ray start --head --resources '{"busray_trial_slot": 8}'``
  adds it), trials ask for 1 byte of ``memory`` instead and Tune's ``max_concurrent_trials`` bounds them.
- **Pre-flight.** Before any trial is started, what one trial asks for (CPUs, GPUs, slots) is compared
  with what the cluster has: a trial that could never be placed would otherwise wait forever while
  Tune warns. The error names the resource and the ``--set resources.…`` that would fit.
- **Quiet.** Workers' stdout/stderr is not forwarded to the driver (``log_to_driver``) unless
  ``--verbose``: the sweep console (:mod:`busray.sweep.console`) reports trial events itself, and a
  failed trial's error is recorded from its outcome.
- **Report pacing.** Ray Train V2 polls its workers every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s);
  a DDP trial's ``ray.train.report`` waits for that poll, so an epoch cost at least 2 s. Local clusters
  poll every 0.1 s (:data:`TRAIN_POLL_S`).
- **No preemption watcher on a local cluster.** Ray Train V2 starts a ``PreemptionWatcher`` actor with
  every DDP worker group to poll for node drains (spot preemption); on a one-machine cluster there is no
  other node to move to, and the actor cost ~2.5 CPU-seconds per worker group on 2 cores, so local
  clusters set ``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0``. A cluster of ``RAY_ADDRESS`` keeps Ray's default.
- ``_temp_dir`` (sockets and logs) must stay short: Unix socket paths are limited to 107 bytes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import Iterator, Mapping

from busray.configtools import ConfigError
from busray.experiment.files import ResourcesSpec

TEMP_DIR_ENV = "BUSRAY_RAY_TEMP_DIR"
LOOPBACK = "127.0.0.1"
TRAIN_POLL_S = "0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
#: The custom resource of a local cluster's trial slots (one per trial; ``max_concurrent`` of them).
SLOT_RESOURCE = "busray_trial_slot"


def _drop_token_auth_notice(record: logging.LogRecord) -> bool:
    return "Token authentication is enabled" not in record.getMessage()


def start_local_ray(max_concurrent: int, temp_dir: str | None = None, num_cpus: int | None = None,
                    verbose: bool = False) -> None:
    """Start a private loopback cluster with ``max_concurrent`` trial slots."""
    import ray

    from ray._private import ray_constants

    temp_dir = temp_dir or os.environ.get(TEMP_DIR_ENV)
    env = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": TRAIN_POLL_S, "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_S)  # inherited by the raylet
    # single-machine mode = loopback only (see the module docstring); the variable is read by the
    # processes ray.init starts, the constant by this one (it was read when Ray was imported)
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    if not verbose:  # Ray's notice that it kept its default (token auth on) is not news to a user
        logging.getLogger(AUTH_LOGGER).addFilter(_drop_token_auth_notice)
    ray.init(resources={SLOT_RESOURCE: float(max_concurrent)}, num_cpus=num_cpus, _temp_dir=temp_dir,
             _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK, log_to_driver=verbose,
             configure_logging=True, logging_level="INFO" if verbose else "WARNING",
             runtime_env={"env_vars": env})


@contextlib.contextmanager
def ray_session(max_concurrent: int, verbose: bool = False, temp_dir: str | None = None) -> Iterator[None]:
    """Use the running Ray (tests, notebooks), the cluster of ``RAY_ADDRESS``, or a new local one.

    Ray is shut down on exit only when this function started or connected it.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="INFO" if verbose else "WARNING",
                 log_to_driver=verbose)
    else:
        start_local_ray(max_concurrent, temp_dir, verbose=verbose)
    try:
        yield
    finally:
        ray.shutdown()


def dashboard_url() -> str | None:
    """The Ray dashboard of the connected cluster, as a URL (None without one)."""
    import ray
    from ray._private.worker import get_dashboard_url  # Ray's own lookup (no public API in 2.60)

    try:
        url = get_dashboard_url() if ray.is_initialized() else ""
    except Exception:  # a Ray without it, or no dashboard: no hint, not an error
        return None
    return (url if url.startswith("http") else f"http://{url}") if url else None


def trial_resources(resources: Mapping[str, float]) -> dict[str, float]:
    """What one Tune trial of a run request's ``resources`` reserves.

    A single-worker trial trains in its own actor, so the actor takes the worker's CPUs/GPUs (a
    fractional GPU packs several trials on one card). A DDP trial's actor only drives a
    ``TorchTrainer`` whose workers reserve their own resources, so it takes none. Either way it holds
    one trial slot.
    """
    slot = _slot()
    if int(resources["workers"]) > 1:
        return {"CPU": 0.0, **slot}
    gpus = float(resources["gpus_per_worker"])
    return {"CPU": float(resources["cpus_per_worker"]), **({"GPU": gpus} if gpus > 0 else {}), **slot}


def check_resources(res: ResourcesSpec, worker_counts: list[int],
                    have: Mapping[str, float] | None = None) -> None:
    """Refuse, with one line, a trial that this cluster can never place (``have``: what the cluster has,
    by default the connected one's resources; a ``--dry-run`` passes :func:`local_resources`)."""
    if have is None:
        import ray

        have = ray.cluster_resources()
    for workers in sorted(set(worker_counts)):
        wants = _demand(res, workers)
        short = [name for name, amount in wants.items() if amount > have.get(name, 0.0) + 1e-9]
        if short:
            raise ConfigError(_unplaceable(short, wants, have, workers, res))


def room_for_trials(res: ResourcesSpec, workers: int, have: Mapping[str, float]) -> int:
    """How many trials of ``workers`` workers the cluster ``have`` runs at once (each worker takes its
    CPUs and GPUs; a DDP trial's driving actor takes none)."""
    return min((math.floor(have.get(name, 0.0) / amount + 1e-9)
                for name, amount in _demand(res, workers).items() if amount > 0), default=10**9)


def _demand(res: ResourcesSpec, workers: int) -> dict[str, float]:
    """The CPUs and GPUs one trial of ``workers`` workers reserves."""
    return {"CPU": res.cpus_per_worker * workers, "GPU": res.gpus_per_worker * workers}


def local_resources() -> dict[str, float] | None:
    """The CPUs and GPUs a local cluster started here would have, by Ray's own detection (the one
    ``ray.init`` runs: CPU count and cgroup limits, visible NVIDIA GPUs), without starting Ray. None
    where a run would use another cluster (``RAY_ADDRESS``) or this Ray lacks the (private) resolver."""
    if os.environ.get("RAY_ADDRESS"):
        return None
    try:
        from ray._private.resource_and_label_spec import ResourceAndLabelSpec  # no public API in 2.60

        spec = ResourceAndLabelSpec().resolve(is_head=True, node_ip_address=LOOPBACK)
    except Exception:  # another Ray version: the run checks its cluster when it starts, as before
        return None
    return {"CPU": float(spec.num_cpus), "GPU": float(spec.num_gpus)}


def _unplaceable(short: list[str], wants: Mapping[str, float], have: Mapping[str, float], workers: int,
                 res: ResourcesSpec) -> str:
    """One line for every resource a trial lacks (a GPU preset on a CPU machine lacks both), with one
    ``--set`` per key that would make it fit."""
    keys, needs, has, hints = [], [], [], {}
    for name in short:
        key = "cpus_per_worker" if name == "CPU" else "gpus_per_worker"
        per, there = getattr(res, key), have.get(name, 0.0)
        keys.append(f"resources.{key}")
        needs.append(f"{wants[name]:g} {name} ({workers} worker(s) x {per:g})")
        has.append(f"{there:g} {name}")
        if workers > 1 and there >= per > 0:
            hints["workers"] = min(int(there // per), hints.get("workers", workers))
        elif there > 0:
            share = there / workers
            hints[key] = math.floor(share * 100) / 100 if name == "GPU" else max(1, int(share))
        elif name == "GPU":
            hints[key] = 0
    fits = " ".join(f"--set resources.{key}={value:g}" for key, value in hints.items()) or "a cluster with CPUs"
    return (f"{', '.join(keys)}: a trial needs {' and '.join(needs)} but the Ray cluster has "
            f"{' and '.join(has)}; try {fits}")


def _slot() -> dict[str, float]:
    import ray

    if ray.cluster_resources().get(SLOT_RESOURCE, 0) >= 1:
        return {SLOT_RESOURCE: 1.0}
    return {"memory": 1.0}
