"""Using a trained checkpoint: rebuild it, and predict images (``busray predict``).

Scoring a split (``busray evaluate``) is :mod:`busray.training.evaluation`.

The checkpoint carries its resolved config, so the model is rebuilt exactly as trained; encoder weights
are never downloaded again (``model.weights`` is set to ``none`` before the checkpoint's state is loaded).
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from busray.config import Config, config_from_dict
from busray.data.images import fit_square, read_gray
from busray.losses import MultiTaskLoss
from busray.models import LEVELS, create_model
from busray.training.batches import to_model_input
from busray.training.checkpoint import load_checkpoint
from busray.training.classes import model_classes
from busray.training.epoch import StepContext
from busray.atomic import atomic_write
from busray.training.setup import resolve_device

#: Predicted masks are ``<stem>.pred_mask.png``: never BUSI's ground-truth naming ``<stem>_mask.png``.
MASK_SUFFIX = ".pred_mask.png"



def load_trained(path: str | Path, device: str = "auto") -> tuple[torch.nn.Module, Config, torch.device]:
    """Rebuild the model of a checkpoint (file, run folder or checkpoints folder) in eval mode."""
    payload = load_checkpoint(path)
    cfg = config_from_dict(payload["config"])
    cfg = replace(cfg, model=replace(cfg.model, weights="none"))
    dev = resolve_device(device)
    model = create_model(cfg.model)
    model.load_state_dict(payload["model"])
    return model.to(dev).eval(), cfg, dev


def evaluation_context(model, cfg: Config, device: torch.device) -> StepContext:
    """What :func:`busray.training.epoch.evaluate` needs to score ``model`` (no optimiser)."""
    return StepContext(model=model, loss_fn=MultiTaskLoss(cfg.loss).to(device), optimizer=None, device=device,
                       in_chans=cfg.model.in_chans, mean=model.input_mean, std=model.input_std,
                       data_cfg=cfg.data.augment)


@torch.inference_mode()
def predict_images(path: str | Path, images: list[str | Path], out_dir: str | Path,
                   device: str = "auto") -> Path:
    """Write ``<stem>.pred_mask.png`` per image and ``predictions.csv`` (class, probabilities, UPA weights).

    The per-level UPA weights are a per-image uncertainty signal: a low omega_seg means the model chose
    to rely on its base decoder features rather than the task-interaction-enhanced ones.
    """
    model, cfg, dev = load_trained(path, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    class_names = list(model_classes(path, cfg))
    rows = []
    for image_path in tqdm(images, desc="predict", unit="img", leave=False, disable=None):  # None: a terminal only
        gray = read_gray(Path(image_path))
        square = fit_square(gray, cfg.data.image_size, cfg.data.resize_mode, is_mask=False)
        x = torch.from_numpy(square)[None, None].to(dev)
        result = model(to_model_input(x, cfg.model.in_chans, model.input_mean, model.input_std))
        prob = torch.sigmoid(result.seg[0, 0]).cpu().numpy()
        mask = _back_to_original(prob > 0.5, gray.shape, cfg.data.resize_mode)
        atomic_write(out / f"{Path(image_path).stem}{MASK_SUFFIX}", _png_bytes(mask))
        rows.append(_prediction_row(image_path, result, class_names))
    _write_csv(out / "predictions.csv", rows)
    return out / "predictions.csv"


def _png_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def _back_to_original(mask: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    """Undo the square resize (and letterbox) so the mask PNG matches the input image's size."""
    h, w = shape
    size = mask.shape[0]
    if mode == "pad":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (size - nh) // 2, (size - nw) // 2
        mask = mask[top:top + nh, left:left + nw]
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
    return np.asarray(img) > 127


def _prediction_row(image_path, result, class_names: list[str]) -> dict:
    probs = torch.softmax(result.clf[0].float(), dim=0).cpu().numpy()
    row = {"image": str(image_path), "class": class_names[int(probs.argmax())],
           "lesion_pixels_fraction": float((torch.sigmoid(result.seg[0, 0]) > 0.5).float().mean())}
    row.update({f"prob_{c}": float(p) for c, p in zip(class_names, probs)})
    for key in ("upa_w_seg", "upa_w_clf"):
        values = result.diagnostics[key][0].float().cpu().numpy()
        row.update({f"{key}_{lvl + 1}": float(values[lvl]) for lvl in range(len(LEVELS))})
    return row


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())
