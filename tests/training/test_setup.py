"""``build_setup``'s device-dependent choices: the memory layout ``train.channels_last`` resolves to."""

from __future__ import annotations

import pytest
import torch

from busray.config import load_config
from busray.training.setup import build_setup, use_channels_last

from tinyrun import tiny

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize("setting, device, dtype, expected", [
    (None, CPU, None, True),               # auto: NHWC pays on CPU in fp32 (benchmarks/cpu_channels_last.py)
    (None, CPU, torch.bfloat16, True),
    (None, CUDA, torch.bfloat16, True),    # auto: tensor-core kernels are NHWC
    (None, CUDA, torch.float16, True),
    (None, CUDA, None, False),             # auto: fp32 on CUDA stays NCHW
    (False, CPU, None, False),             # an explicit value wins
    (True, CUDA, None, True),
])
def test_channels_last_auto_follows_device_and_precision(setting, device, dtype, expected):
    assert use_channels_last(setting, device, dtype) is expected


@pytest.mark.parametrize("value, nhwc", [("auto", True), ("false", False)])
def test_the_cpu_model_gets_the_layout_asked_for(value, nhwc):
    setup = build_setup(load_config(None, tiny("train.device=cpu", f"train.channels_last={value}")), None)
    # a 1x1 or depthwise kernel is laid out the same either way: the others tell
    convs = [m.weight for m in setup.raw_model.modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) and m.weight.shape[1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) is nhwc for w in convs)
