"""train_throughput.py's busray figure counts the images its timed steps really processed: an epoch's
last batch is partial, so ``steps * batch`` would overcount (gpu_suite.py reports this figure)."""

from __future__ import annotations

from benchhelpers import load_benchmark

from busray.training.setup import build_setup


def test_busray_throughput_counts_the_images_the_model_saw():
    bench = load_benchmark("train_throughput")
    probe = load_benchmark("packing_probe")
    batch, steps = 4, 12
    cfg = probe.probe_config("test_efficientnet", 64, batch, "model.decoder_channels=[16,16,8,8]",
                             "model.clf_dim=16", "train.progress=false")
    setup = build_setup(cfg, run_dir=None)
    seen = []
    setup.ctx.model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    timed = bench.busray_throughput(setup, batch, steps, warmup=0)
    assert len(setup.splits["train"]) % batch  # the split ends on a partial batch ...
    assert timed.images == sum(seen) < steps * batch  # ... counted as it is
    assert len(seen) == steps and timed.per_s > 0
