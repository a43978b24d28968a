#!/usr/bin/env bash
# The GPU figures (issue 8: gpu_suite.py; issue 11: Table 2) in one device session of 15 minutes.
#
# The GPU machine has Python 3.12, an older torch/timm than our pins, no Ray or Optuna, and no
# network; one call carries at most 64 MiB (the Ray/Optuna wheels are 54 MiB, BUSI 39 MiB). So:
#
#   here:                      bash benchmarks/gpu_session.sh prepare    # .wheels/ and .data/busi/
#   call 1, carry [".wheels"]: bash benchmarks/gpu_session.sh install    # ~3 min: install, throughput, stacking
#   call 2, carry [".data"]:   bash benchmarks/gpu_session.sh trials     # ~4 min: 100-epoch trial, packing
#   call 3, no carry:          bash benchmarks/gpu_session.sh table2     # Table 2, 3 seeds; rerun to resume
#
# Installed packages (.gpusite/), the data and the results store (.gpustore/) are ignored paths in the
# repo, so they stay on the machine between calls while it is warm. Each step writes its table/JSON/
# log (and table2 its report) under $OUT. No ImageNet weights can be downloaded there: table2 runs
# from scratch unless the Hugging Face cache already holds tf_efficientnet_b4.aa_in1k (install says),
# and its report is labelled with the weights used (TABLE2_WEIGHTS overrides). TABLE2_EXTRA adds
# --set arguments, e.g. TABLE2_EXTRA="--set base.train.channels_last=true" when call 1's table says
# channels_last is faster on this card.
#
# GPU_SESSION_DRYRUN=1 runs every step in CPU-sized form (tiny encoder, 64 px, 1 epoch, 1 seed, no
# GPU), to check the script and the installed bundle before spending device time.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: gpu_session.sh prepare|install|trials|table2}
out=${OUT:-/tmp/busray-gpu-out}
mkdir -p "$out"
export PYTHONPATH="$PWD/.gpusite:$PWD" PYTHONUNBUFFERED=1
py=python3
suite=() table2=()
if [ -n "${GPU_SESSION_DRYRUN:-}" ]; then
  suite=(--tiny)
  table2=(--set base.model.encoder=test_efficientnet --set base.data.image_size=64 --set base.train.epochs=1
          --set base.train.batch_size=4 --set resources.gpus_per_worker=0 --set resources.cpus_per_worker=1)
fi

case "$step" in
prepare)
  [ -d .wheels ] || bash ../shared/tools/gpu_wheels.sh .wheels
  mkdir -p .data && rm -rf .data/busi && cp -r ../shared/data .data/busi
  du -sh .wheels .data
  ;;
install)
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .gpusite .wheels/*.whl
  $py - <<'EOF' 2>&1 | tee "$out/versions.txt"
import os, sys
import torch, timm, ray, optuna, busray.sweep  # noqa: F401  (busray's Ray side imports)
print("python", sys.version.split()[0], "torch", torch.__version__, "timm", timm.__version__,
      "ray", ray.__version__, "optuna", optuna.__version__,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
cache = os.path.expanduser("~/.cache/huggingface/hub/models--timm--tf_efficientnet_b4.aa_in1k")
print("B4 ImageNet weights in the HF cache (table2 uses them if so):", os.path.isdir(cache))
EOF
  $py benchmarks/gpu_suite.py "${suite[@]}" --sections throughput,stacking --json "$out/gpu_suite_a.json" 2>&1 | tee "$out/gpu_suite_a.log"
  ;;
trials)
  $py benchmarks/gpu_suite.py "${suite[@]}" --sections trials --data .data/busi --json "$out/gpu_suite_b.json" 2>&1 | tee "$out/gpu_suite_b.log"
  ;;
table2)
  cached=~/.cache/huggingface/hub/models--timm--tf_efficientnet_b4.aa_in1k
  weights=${TABLE2_WEIGHTS:-$([ -d "$cached" ] && echo imagenet || echo none)}
  start=$(date +%s)
  $py -m busray ablate ablations/table2.yaml --storage .gpustore --seeds "${TABLE2_SEEDS:-$([ -n "${GPU_SESSION_DRYRUN:-}" ] && echo 1 || echo 3)}" --resume --no-progress \
    --set base.data.root=.data/busi --set base.model.weights="$weights" "${table2[@]}" ${TABLE2_EXTRA:-} 2>&1 | tee "$out/table2.log"
  echo "table2 wall: $(( $(date +%s) - start )) s, weights=$weights" | tee -a "$out/table2.log"
  $py -m busray report table2 --storage .gpustore --out "$out/table2" --spread ci
  ;;
*)
  echo "gpu_session.sh: unknown step '$step' (prepare|install|trials|table2)" >&2
  exit 2
  ;;
esac
