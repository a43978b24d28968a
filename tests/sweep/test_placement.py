"""The pre-flight rule, node by node and with an autoscaler's node types (no Ray: shapes only)."""

from __future__ import annotations

import pytest

from busray.configtools import ConfigError
from busray.experiment import ResourcesSpec
from busray.sweep.placement import NodeType, capacity, check_resources, trial_resources

GPU_WORKERS = [NodeType("worker_gpu", {"CPU": 8.0, "GPU": 1.0}, 8)]
HEAD = {"CPU": 0.0, "busray_trial_slot": 16.0}


@pytest.mark.parametrize("bundle, nodes, held", [
    ({"CPU": 1.0, "GPU": 0.0}, [{"CPU": 1.0}, {"CPU": 1.0}], 2),      # one worker per node
    ({"CPU": 2.0, "GPU": 0.0}, [{"CPU": 1.0}, {"CPU": 1.0}], 0),      # 2 CPU in all, but on no one node
    ({"CPU": 2.0, "GPU": 0.25}, [{"CPU": 8.0, "GPU": 1.0}], 4),       # four trials packed on a GPU
    ({"CPU": 2.0, "GPU": 0.25}, [{"CPU": 4.0, "GPU": 1.0}], 2),       # ... unless CPUs run out first
])
def test_capacity_counts_bundles_node_by_node(bundle, nodes, held):
    assert capacity(bundle, nodes) == held


def test_two_one_cpu_nodes_do_not_hold_a_two_cpu_trial():
    with pytest.raises(ConfigError, match=r"resources.cpus_per_worker: a trial needs 2 CPU .* but the Ray cluster "
                                          r"has 2 CPU but no node holds 2 CPU; try --set resources.cpus_per_worker=1"):
        check_resources(ResourcesSpec(cpus_per_worker=2), [1], [{"CPU": 1.0}, {"CPU": 1.0}])


@pytest.mark.parametrize("resources, workers", [
    ({"cpus_per_worker": 2, "gpus_per_worker": 0.25}, 1),   # a packed trial: GPU workers at min_workers 0
    ({"cpus_per_worker": 4, "gpus_per_worker": 1, "workers": 2}, 2),  # busi_gpu.yaml's DDP pair, two nodes
])
def test_a_shape_only_new_nodes_hold_is_a_wait_not_an_error(resources, workers):
    note = check_resources(ResourcesSpec(**resources), [workers], [HEAD], GPU_WORKERS)
    assert note.startswith("the cluster has no node for a trial yet: waiting for the autoscaler to start nodes")
    assert "(worker_gpu)" in note


def test_a_shape_no_node_type_holds_is_refused_saying_so():
    with pytest.raises(ConfigError, match=r"^resources.gpus_per_worker: a trial needs 2 GPU \(1 worker\(s\) x 2\) but "
                                          r"the Ray cluster, with the nodes its autoscaler may start \(worker_gpu\), "
                                          r"has 1 GPU; try --set resources.gpus_per_worker=1$"):
        check_resources(ResourcesSpec(gpus_per_worker=2), [1], [HEAD], GPU_WORKERS)


def test_a_trial_the_nodes_up_hold_needs_no_wait():
    assert check_resources(ResourcesSpec(gpus_per_worker=0.25), [1], [HEAD, {"CPU": 8.0, "GPU": 1.0}],
                           GPU_WORKERS) is None


@pytest.mark.parametrize("workers, cluster, reserved", [
    (1, {"CPU": 8.0, "GPU": 1.0, "busray_trial_slot": 16.0}, {"CPU": 2.0, "GPU": 0.25}),  # no slot: placed by CPU/GPU
    (2, {"CPU": 8.0, "busray_trial_slot": 16.0}, {"CPU": 0.0, "busray_trial_slot": 1.0}),  # a DDP driver: a slot
    (2, {"CPU": 8.0}, {"CPU": 0.0, "memory": 1.0}),                                       # ... where there are any
])
def test_what_a_trials_own_actor_reserves(workers, cluster, reserved):
    resources = {"workers": workers, "cpus_per_worker": 2.0, "gpus_per_worker": 0.25 if workers == 1 else 0.0}
    assert trial_resources(resources, cluster) == reserved
