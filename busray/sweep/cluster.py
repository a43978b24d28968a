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
- **Trial slots.** A local cluster gets ``busray_trial_slot = max_concurrent``, for DDP trials' driving
  actors (:mod:`busray.sweep.placement`).
- **Pre-flight.** Before any trial is started, a trial's shape is compared with the nodes that are up
  (:func:`alive_nodes`) and the node types the cluster's autoscaler may start (:func:`node_types`), by
  :func:`busray.sweep.placement.check_resources`; a shape only new nodes hold is asked of the
  autoscaler (:func:`ask_autoscaler`).
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
import os
from typing import Iterator, Mapping

from busray.configtools import load_yaml
from busray.experiment.files import ResourcesSpec
from busray.sweep.placement import SLOT_RESOURCE, NodeType, worker_bundle

TEMP_DIR_ENV = "BUSRAY_RAY_TEMP_DIR"
LOOPBACK = "127.0.0.1"
TRAIN_POLL_S = "0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTOSCALER_CONFIG_ENV = "BUSRAY_AUTOSCALER_CONFIG"


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


def alive_nodes() -> list[dict[str, float]]:
    """The resources of each node of the connected cluster that is up."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def node_types() -> list[NodeType]:
    """The node types the connected cluster's autoscaler may start, with their most nodes: what it
    reported to the GCS (``ray up`` clusters; Ray 2.60 has no public API for it), else the file
    ``$BUSRAY_AUTOSCALER_CONFIG`` (a ``ray up`` config); none on a cluster without an autoscaler."""
    import ray._private.state as ray_state  # private: the autoscaler's ClusterConfig in the GCS

    try:
        config = ray_state.state.get_cluster_config()
    except Exception:  # an older Ray, or a GCS without the key
        config = None
    if config is not None and config.node_group_configs:
        return [NodeType(g.name, {k: float(v) for k, v in g.resources.items()},
                         10**6 if g.max_count < 0 else int(g.max_count)) for g in config.node_group_configs]
    path = os.environ.get(AUTOSCALER_CONFIG_ENV)
    return node_types_of(load_yaml(path)) if path else []


def node_types_of(cluster_yaml: Mapping) -> list[NodeType]:
    """The node types of a ``ray up`` config (``available_node_types``), at their ``max_workers``."""
    types = cluster_yaml.get("available_node_types") or {}
    head = cluster_yaml.get("head_node_type")
    return [NodeType(name, {k: float(v) for k, v in (spec.get("resources") or {}).items()},
                     1 if name == head else int(spec.get("max_workers", cluster_yaml.get("max_workers", 0))))
            for name, spec in types.items()]


def ask_autoscaler(res: ResourcesSpec, workers: int) -> None:
    """Ask the autoscaler for the nodes a trial of ``workers`` workers needs (it starts them now rather
    than when Tune's first request reaches it)."""
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[worker_bundle(res)] * workers)


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
