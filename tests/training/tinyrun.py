"""Overrides that make a full-model training run take seconds on a CPU (tiny encoder, 64x64)."""

TINY = [
    "model.encoder=test_efficientnet", "model.weights=none", "model.decoder_channels=[16,16,8,8]",
    "model.clf_dim=16", "data.root=synthetic:n=48,size=64", "data.image_size=64",
    "data.detect_near_duplicates=false", "train.batch_size=4", "train.eval_batch_size=16",
    "train.progress=false", "train.num_threads=1", "train.tb_images=2", "train.patience=0",
]


def tiny(*extra: str) -> list[str]:
    return [*TINY, *extra]
