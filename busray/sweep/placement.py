"""Can a cluster place a trial? The one pre-flight rule, for the nodes that are up and those that may come.

A trial is ``resources.workers`` bundles of ``{CPU: cpus_per_worker, GPU: gpus_per_worker}``, each on
one node (a single-worker trial's actor, or a DDP trial's Ray Train workers; a DDP trial's driving
actor takes no CPU). Before any trial starts, that shape is compared with

1. the nodes that are up: ``capacity`` counts how many bundles fit node by node (two nodes of one CPU
   each hold two 1-CPU workers, never one 2-CPU worker -- a sum over the cluster would say they do);
2. if they cannot place it, the node types an autoscaler may start (``ray up`` clusters report them to
   the GCS; :func:`node_types`): a shape one of them holds is not an error but a wait -- the driver says
   so and asks the autoscaler for those bundles (``ray.autoscaler.sdk.request_resources``), so a GPU
   preset submitted to a cluster whose GPU workers are at ``min_workers: 0`` starts them;
3. otherwise it is refused in one line naming the resource and the ``--set resources.…`` that fits.

Trial slots (``busray_trial_slot``): a local cluster gets ``max_concurrent`` of them and a DDP trial's
driving actor (no CPU) takes one, so ``max_concurrent`` DDP drivers wait for slots rather than pile up
on one node. A single-worker trial takes none: its CPUs and GPUs bound it, on whichever node has them
(slots on the head alone made packed GPU trials unplaceable on GPU workers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from busray.configtools import ConfigError
from busray.experiment.files import ResourcesSpec
from busray.sweep.outcome import count_of

SLOT_RESOURCE = "busray_trial_slot"
PLACED = ("CPU", "GPU")
UNBOUNDED = 10**9  # the bundles a node holds of a bundle that asks for nothing


@dataclass(frozen=True)
class NodeType:
    """What an autoscaler may start: ``count`` nodes (at most) of ``resources`` each."""
    name: str
    resources: Mapping[str, float]
    count: int


def worker_bundle(res: ResourcesSpec) -> dict[str, float]:
    """What one worker of a trial reserves on its node."""
    return {"CPU": res.cpus_per_worker, "GPU": res.gpus_per_worker}


def capacity(bundle: Mapping[str, float], nodes: Iterable[Mapping[str, float]]) -> int:
    """How many ``bundle``s the ``nodes`` hold at once, each bundle on one node."""
    total = 0
    for node in nodes:
        fits = [math.floor(node.get(name, 0.0) / amount + 1e-9) for name, amount in bundle.items() if amount > 0]
        total += min(fits, default=UNBOUNDED)
    return min(total, UNBOUNDED)


def type_capacity(bundle: Mapping[str, float], types: Iterable[NodeType]) -> int:
    return sum(capacity(bundle, [t.resources]) * t.count for t in types)


def check_resources(res: ResourcesSpec, worker_counts: Sequence[int], nodes: Sequence[Mapping[str, float]],
                    types: Sequence[NodeType] = ()) -> str | None:
    """None when the ``nodes`` that are up place a trial of each worker count; a line saying what the
    driver waits for when only the autoscaler's node ``types`` do; else a ``ConfigError`` (one line)."""
    bundle = worker_bundle(res)
    waiting = []
    for workers in sorted(set(worker_counts)):
        if capacity(bundle, nodes) >= workers:
            continue
        able = [t for t in types if capacity(bundle, [t.resources]) > 0]
        if able and type_capacity(bundle, able) >= workers:
            waiting.append(f"{count_of(workers, 'worker')} of {_text(bundle)} ({'/'.join(t.name for t in able)})")
            continue
        raise ConfigError(_unplaceable(res, workers, nodes, types))
    if not waiting:
        return None
    return (f"the cluster has no node for a trial yet: waiting for the autoscaler to start nodes for "
            f"{', '.join(waiting)}")


def room_for_trials(res: ResourcesSpec, workers: int, nodes: Sequence[Mapping[str, float]]) -> int:
    """How many trials of ``workers`` workers the ``nodes`` run at once."""
    return capacity(worker_bundle(res), nodes) // max(1, workers)


def concurrency(wanted: int | None, res: ResourcesSpec, workers: int, runs: int,
                nodes: Sequence[Mapping[str, float]], types: Sequence[NodeType] = ()) -> int:
    """Trials at once: ``wanted`` (a file's ``max_concurrent``), or for ``auto`` (None) as many as the
    ``nodes`` place (else the autoscaler's node ``types``), at most ``runs`` and at least one. On a
    CPU machine that is one trial per core for the default 1 CPU (and so 1 torch thread) per trial."""
    if wanted is not None:
        return wanted
    bundle = worker_bundle(res)
    room = capacity(bundle, nodes) // max(1, workers) or type_capacity(bundle, types) // max(1, workers)
    return max(1, min(room, runs))


def _text(bundle: Mapping[str, float]) -> str:
    return " + ".join(f"{amount:g} {name}" for name, amount in bundle.items() if amount > 0) or "nothing"


def _unplaceable(res: ResourcesSpec, workers: int, nodes: Sequence[Mapping[str, float]],
                 types: Sequence[NodeType]) -> str:
    """One line: what a trial needs, what the cluster has (with its autoscaler: what it may have), and
    one ``--set`` per key that would make it fit."""
    pool = [*nodes, *(t.resources for t in types for _ in range(min(t.count, workers)))]
    bundle = worker_bundle(res)
    have = {name: sum(n.get(name, 0.0) for n in pool) for name in PLACED}
    largest = {name: max((n.get(name, 0.0) for n in pool), default=0.0) for name in PLACED}
    wants = {name: amount * workers for name, amount in bundle.items()}
    short = [name for name in PLACED if wants[name] > have[name] + 1e-9] or \
        [name for name in PLACED if bundle[name] > largest[name] + 1e-9] or ["CPU"]
    keys, needs, has, hints = [], [], [], {}
    for name in short:
        key = "cpus_per_worker" if name == "CPU" else "gpus_per_worker"
        per, there = getattr(res, key), have[name]
        keys.append(f"resources.{key}")
        needs.append(f"{wants[name]:g} {name} ({workers} worker(s) x {per:g})")
        has.append(f"{there:g} {name}")
        if workers > 1 and largest[name] >= per > 0:
            hints["workers"] = min(max(1, int(there // per)), hints.get("workers", workers))
        elif largest[name] > 0:
            share = min(largest[name], there / workers)
            hints[key] = math.floor(share * 100) / 100 if name == "GPU" else max(1, int(share))
        elif name == "GPU":
            hints[key] = 0
    fits = " ".join(f"--set resources.{key}={value:g}" for key, value in hints.items()) or "a cluster with CPUs"
    where = f"the Ray cluster has {' and '.join(has)}"
    if types:
        where = (f"the Ray cluster, with the nodes its autoscaler may start ({', '.join(t.name for t in types)}), "
                 f"has {' and '.join(has)}")
    if all(wants[n] <= have[n] + 1e-9 for n in short):
        where += f" but no node holds {_text(bundle)}"
    return f"{', '.join(keys)}: a trial needs {' and '.join(needs)} but {where}; try {fits}"


def trial_resources(resources: Mapping[str, float], cluster: Mapping[str, float]) -> dict[str, float]:
    """What one Tune trial of a run request's ``resources`` reserves for its own actor: a single-worker
    trial trains there (its CPUs and GPUs: a fractional GPU packs trials on one card); a DDP trial's
    actor only drives Ray Train's workers (which reserve their own) and takes a trial slot where the
    cluster has them (else 1 byte of memory: Tune's ``max_concurrent_trials`` bounds them)."""
    if int(resources["workers"]) > 1:
        slot = {SLOT_RESOURCE: 1.0} if cluster.get(SLOT_RESOURCE, 0) >= 1 else {"memory": 1.0}
        return {"CPU": 0.0, **slot}
    gpus = float(resources["gpus_per_worker"])
    return {"CPU": float(resources["cpus_per_worker"]), **({"GPU": gpus} if gpus > 0 else {})}
