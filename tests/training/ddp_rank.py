"""One rank of a real DDP process group for the DDP tests, without Ray:

    python ddp_rank.py layers RANK WORLD STORE_FILE OUT_FILE          (tests/training/test_syncnorm.py)
    python ddp_rank.py fit    RANK WORLD STORE_FILE RUN_DIR [KEY=VALUE ...]   (tests/training/test_ddp.py)

Each rank joins a gloo process group through ``file://STORE_FILE`` (as Ray Train's workers join
theirs, on CPU) and runs:

- ``layers``: every case of :func:`layer_cases` converted by ``sync_batch_statistics``, on its rows
  ``RANK::WORLD`` of the case's batch, one forward and backward; it saves the outputs, the input
  gradients, the parameter gradients summed over ranks (what DDP averages) and the buffers;
- ``fit``: the real ``busray.training.fit``; every rank writes its own run folder (``RUN_DIR``, one per
  rank), so a test can compare the ranks' histories and checkpoints.

:func:`run_ranks` starts the ranks and waits for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from timm.layers import BatchNormAct2d
from torch import nn

from busray.models.upa import UncertaintyProxyAttention

HERE = Path(__file__).resolve()
GLOBAL_BATCH = 8


def layer_cases() -> dict[str, tuple[nn.Module, list[torch.Tensor]]]:
    """name -> (plain module in train mode, its full-batch inputs); the same on every call."""
    torch.manual_seed(0)
    b = GLOBAL_BATCH
    cases = {
        "BatchNorm2d": (nn.BatchNorm2d(3), [torch.randn(b, 3, 5, 5) * 3 + 2]),
        "BatchNormAct2d": (BatchNormAct2d(3, act_layer=nn.SiLU), [torch.randn(b, 3, 5, 5) - 1]),
        "BatchNorm1d": (nn.BatchNorm1d(6), [torch.randn(b, 6) * 0.5 + 4]),
        "UPA": (UncertaintyProxyAttention(hidden=4, norm="running"),
                [torch.randn(b, 3, 5, 5), torch.randn(b, 3, 5, 5) * 2, torch.randn(b, 6), torch.randn(b, 6)]),
    }
    for module, _ in cases.values():
        with torch.no_grad():  # non-trivial affine parameters
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        module.train()
    return cases


def outputs_of(module: nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    out = module(*inputs)
    return list(out) if isinstance(out, tuple) else [out]


def output_weights(outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fixed full-batch weights w_k: the test's loss is sum_k (w_k * out_k).sum() (a non-trivial gradient)."""
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(o.shape, generator=gen) for o in outputs]


def _run_layers(rank: int, world: int, out_file: str) -> None:
    from busray.training.syncnorm import sync_batch_statistics

    saved = {}
    for name, (module, full) in layer_cases().items():
        assert sync_batch_statistics(module, torch.device("cpu")) == 1
        inputs = [x[rank::world].clone().requires_grad_() for x in full]
        outputs = outputs_of(module, inputs)
        weights = output_weights([o.new_empty((GLOBAL_BATCH, *o.shape[1:])) for o in outputs])
        loss = sum((w[rank::world] * o).sum() for w, o in zip(weights, outputs))
        loss.backward()
        grads = {}
        for pname, p in module.named_parameters():
            grads[pname] = p.grad.clone()
            dist.all_reduce(grads[pname])
        saved[name] = {"outputs": [o.detach() for o in outputs], "input_grads": [x.grad for x in inputs],
                       "param_grads": grads, "buffers": {k: v.clone() for k, v in module.named_buffers()}}
    torch.save(saved, out_file)


def _run_fit(run_dir: str, overrides: list[str]) -> int:
    from busray.config import load_config
    from busray.training import fit

    outcome = fit(load_config(None, overrides), EveryRankWrites(), run_dir)
    return 0 if outcome.status == "completed" else 1


class EveryRankWrites:
    """A ``Reporter`` under which each rank writes its own run folder (in a sweep only rank 0 does)."""

    def is_main(self) -> bool:
        return True

    def report(self, epoch: int, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        pass

    def resume_checkpoint_dir(self) -> str | None:
        return None


def main(argv: list[str]) -> int:
    mode, rank, world, store, out, *overrides = argv
    rank, world = int(rank), int(world)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        if mode == "layers":
            _run_layers(rank, world, out)
            return 0
        return _run_fit(out, overrides)
    finally:
        dist.destroy_process_group()


def run_ranks(mode: str, world: int, store: Path, outs: list[Path], *extra: str, timeout: float = 180) -> None:
    """Run ``world`` ranks of ``mode`` (rank r writes ``outs[r]``, logs to ``<store>.rank<r>.log``);
    fail with their logs' ends if one fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback: the host name may not resolve to a usable address
    logs = [store.with_name(f"{store.name}.rank{r}.log") for r in range(world)]
    procs = []
    try:
        for r in range(world):
            with open(logs[r], "w") as log:  # a file, not a pipe: a full pipe would stall the group
                procs.append(subprocess.Popen(
                    [sys.executable, str(HERE), mode, str(r), str(world), str(store), str(outs[r]), *extra],
                    env=env, stdout=log, stderr=subprocess.STDOUT))
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode != 0]
    assert not failed, "\n".join(f"rank {r} exited {code}:\n{logs[r].read_text()[-3000:]}"
                                  for r, code in failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
