"""Does every node that may run a trial see the storage? Checked before any trial starts.

A trial writes its run folder into the storage and the driver records what it finds there. On a
multi-node cluster, a storage folder that is not the same shared folder on every node (a local disk, a
mount missing on one machine) would let a trial train on a node whose files the driver never sees; a
bucket a node cannot reach (no credentials, no endpoint in its environment) fails the same way later.
So the driver writes a marker into the storage and runs one small task on each node that has CPUs or
GPUs (pinned there: ``NodeAffinitySchedulingStrategy``), which reads it back through that node's own
view of the storage: a folder by its path, a bucket through ``pyarrow.fs`` with that node's
environment. A node that cannot read it is refused in one line naming ``--storage`` and the node.
Nodes an autoscaler starts later are not checked (they run the same set-up commands as the others).
"""

from __future__ import annotations

import uuid

from busray.configtools import ConfigError
from busray.storage import Storage

MARKER_DIR = ".busray-nodes"
TIMEOUT_S = 120


def check_storage_on_nodes(storage: Storage, timeout: float = TIMEOUT_S) -> None:
    """Refuse (``ConfigError``) a storage some node that may run trials cannot read."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and _runs_trials(n["Resources"])]
    if len(nodes) < 2:  # one machine: the driver's view is the trials' view
        return
    token = uuid.uuid4().hex
    storage.write_json({"token": token}, MARKER_DIR, token)
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(_read_marker)
        refs = {n["NodeManagerAddress"] + " (" + n["NodeID"][:8] + ")": probe.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(storage, token)
                for n in nodes}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
        blind = {name: (ray.get(ref) if ref in ready else f"no answer in {timeout:.0f} s")
                 for name, ref in refs.items()}
    finally:
        storage.delete(MARKER_DIR, token)
    blind = {name: why for name, why in blind.items() if why}
    if blind:
        name, why = next(iter(blind.items()))
        more = f" (and {len(blind) - 1} more node(s))" if len(blind) > 1 else ""
        raise ConfigError(f"--storage: {storage.uri} is not the same storage on every node: node {name}{more} "
                          f"{why}; {_advice(storage)}")


def _runs_trials(resources: dict) -> bool:
    return resources.get("CPU", 0) > 0 or resources.get("GPU", 0) > 0


def _read_marker(storage: Storage, token: str) -> str:
    """On a node: "" when it reads the driver's marker, else why not (a task's return value)."""
    try:
        found = storage.read_json(MARKER_DIR, token)
    except Exception as err:  # anything a node's own storage stack raises: reported, not crashed
        return f"cannot read it ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return "" if found == {"token": token} else "does not see a file this driver wrote there"


def _advice(storage: Storage) -> str:
    if storage.remote:
        return ("give every node the bucket's credentials and endpoint (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                "AWS_REGION, AWS_ENDPOINT_URL in ray start's environment, or ray job submit --runtime-env-json)")
    return ("mount one shared folder (NFS, EFS, ...) at that path on every node that runs trials, or use a bucket "
            "(--storage s3://bucket/prefix)")
