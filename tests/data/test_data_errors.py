"""Bad input -> one-line DataError naming the file at fault (a table of broken datasets)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from busray.data import DataError, load_dataset, make_split
from databuild import build_busi, lesion_pair, make_cfg, write_png


def _corrupt(root):
    (root / "benign" / "benign (1).png").write_bytes(b"not a png at all")
    return "benign (1).png"


def _truncated(root):
    path = root / "benign" / "benign (2).png"
    path.write_bytes(path.read_bytes()[:60])
    return "benign (2).png"


def _mask_missing(root):
    (root / "malignant" / "malignant (2)_mask.png").unlink()
    return "malignant (2).png"


def _mask_size(root):
    write_png(root / "benign" / "benign (1)_mask.png", np.zeros((10, 10), np.uint8))
    return "benign (1)_mask.png"


def _empty_class(root):
    for path in (root / "malignant").iterdir():
        path.unlink()
    return "malignant"


def _missing_class(root):   # one class folder left (two make a two-class dataset)
    shutil.rmtree(root / "normal")
    shutil.rmtree(root / "benign")
    return "normal"


def _no_classes(root):
    for cls in ("normal", "benign", "malignant"):
        shutil.rmtree(root / cls)
    return str(root)


def _csv(root, text, files=("a.png",)):
    image, mask = lesion_pair()
    for name in files:
        write_png(root / name, image)
    write_png(root / "a_mask.png", mask)
    (root / "manifest.csv").write_text(text)


def _csv_unknown_label(root):
    _csv(root, "image,mask,label\na.png,a_mask.png,cancer\n")
    return "manifest.csv line 2"


def _csv_missing_column(root):
    _csv(root, "image,label\na.png,benign\n")
    return "manifest.csv"


def _csv_mask_missing(root):
    _csv(root, "image,mask,label\na.png,nope.png,benign\n")
    return "nope.png"


def _csv_image_missing(root):
    _csv(root, "image,mask,label\nb.png,,benign\n")
    return "b.png"


def _whu(root, table="image,label\nx.bmp,benign\n", mask=True):
    image, m = lesion_pair()
    write_png(root / "train" / "img" / "x.bmp", image)
    if mask:
        write_png(root / "train" / "mask" / "x.bmp", m)
    else:
        (root / "train" / "mask").mkdir()
    (root / "labels.csv").write_text(table)


def _whu_no_label(root):
    _whu(root, "image,label\ny.bmp,benign\n")
    return "x.bmp: no label"


def _whu_mask_missing(root):
    _whu(root, mask=False)
    return "x.bmp: mask missing"


def _whu_bad_label(root):
    _whu(root, "image,label\nx.bmp,unsure\n")
    return "labels.csv line 2"


BUSI_CASES = [
    (_corrupt, "unreadable or corrupt"), (_truncated, "unreadable or corrupt"),
    (_mask_missing, "mask missing"), (_mask_size, "differs from its image"),
    (_empty_class, "has no images"), (_missing_class, "missing"),
    (_no_classes, "no BUSI class folders"),
]
OTHER_CASES = [
    (_csv_unknown_label, "unknown label 'cancer'"), (_csv_missing_column, "missing column"),
    (_csv_mask_missing, "mask missing"), (_csv_image_missing, "file not found"),
    (_whu_no_label, "labels.csv"), (_whu_mask_missing, "expected"),
    (_whu_bad_label, "unknown label 'unsure'"),
]


def _assert_one_line(err, *fragments):
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("breaker,reason", BUSI_CASES, ids=[c.__name__[1:] for c, _ in BUSI_CASES])
def test_broken_busi_folder(tmp_path, breaker, reason):
    root = build_busi(tmp_path)
    culprit = breaker(root)
    with pytest.raises(DataError) as err:
        load_dataset(make_cfg(), root)
    _assert_one_line(err, culprit, reason)


@pytest.mark.parametrize("breaker,reason", OTHER_CASES,
                         ids=[c.__name__[1:] for c, _ in OTHER_CASES])
def test_broken_csv_and_whu(tmp_path, breaker, reason):
    culprit = breaker(tmp_path)
    classes = ["benign", "malignant"] if "csv" in breaker.__name__ else None
    with pytest.raises(DataError) as err:
        load_dataset(make_cfg(classes=classes), tmp_path)
    _assert_one_line(err, culprit, reason)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(make_cfg(), tmp_path / "nowhere")
    _assert_one_line(err, "nowhere", "not found")


def test_a_file_that_is_no_manifest(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# my scans\nsee the folder beside\n")
    with pytest.raises(DataError) as err:
        load_dataset(make_cfg(), notes)
    _assert_one_line(err, "notes.md", "not a CSV table with columns image, mask, label")


def test_no_root_given():
    with pytest.raises(DataError, match="data.root"):
        load_dataset(make_cfg(root=None))


@pytest.mark.parametrize("root", ["synthetic:n=5", "synthetic:size=8", "synthetic:colour=3", "synthetic:n=x"])
def test_bad_embedded_root(root):
    with pytest.raises(DataError, match="data.root"):
        load_dataset(make_cfg(root=root))


def test_class_too_small_for_split(tmp_path):
    ds = load_dataset(make_cfg(), build_busi(tmp_path, per_class=2))
    with pytest.raises(DataError) as err:
        make_split(ds, make_cfg(detect_near_duplicates=False))
    _assert_one_line(err, str(ds.root), "too few images (2)", "70/15/15")


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# ------------------------------------------------------------------ masks and pixel modes
@pytest.mark.parametrize("values, lesion_pixels", [
    ([0], 0),                       # normal: no lesion
    ([0, 1], 150), ([0, 255], 150), ([0, 100], 150),   # one non-zero value: that value is lesion
    ([0, 255, 60], 150),            # full-scale with a faint (anti-aliased) rim: >= 128 is lesion
])
def test_mask_rule_accepts_binary_masks(tmp_path, values, lesion_pixels):
    from busray.data.images import read_mask_union

    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 15:30] = values[1] if len(values) > 1 else 0
    if len(values) > 2:
        mask[9, 15:30] = values[2]
    path = write_png(tmp_path / "m.png", mask)
    union = read_mask_union([path], tmp_path / "i.png", (40, 50))
    assert set(np.unique(union)) <= {0, 1} and union.sum() == lesion_pixels


@pytest.mark.parametrize("values", [[1, 2], [0, 1, 2], [100, 180], [50, 200, 254]])
def test_mask_rule_refuses_label_maps_and_unscaled_masks(tmp_path, values):
    from busray.data.images import read_mask_union

    mask = np.zeros((40, 50), np.uint8)
    for i, value in enumerate(values):
        mask[5 + 8 * i:12 + 8 * i, 10:30] = value
    path = write_png(tmp_path / "labels_mask.png", mask)
    with pytest.raises(DataError) as err:
        read_mask_union([path], tmp_path / "i.png", (40, 50))
    _assert_one_line(err, "labels_mask.png", "not a binary mask")


def test_coloured_outline_mask_counts_as_lesion(tmp_path):
    """A red (255, 0, 0) drawing has luminance 76; the mask rule takes the channel maximum."""
    from busray.data.images import read_mask_union

    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[10:20, 15:30, 0] = 255
    path = write_png(tmp_path / "red.png", rgb)
    assert read_mask_union([path], tmp_path / "i.png", (40, 50)).sum() == 150


@pytest.mark.parametrize("mode", ["I;16", "P", "RGBA", "CMYK", "LA", "1"])
def test_odd_pixel_modes_decode_to_gray(tmp_path, mode):
    from PIL import Image

    from busray.data.images import read_gray

    gray = lesion_pair()[0]
    if mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)
    else:
        image = Image.fromarray(gray).convert(mode)
    suffix = ".tif" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"x{suffix}")
    out = read_gray(tmp_path / f"x{suffix}")
    assert out.dtype == np.uint8 and out.shape == gray.shape
    if mode in ("P", "RGBA", "LA"):
        assert np.abs(out.astype(int) - gray).max() <= 1
    if mode == "I;16":   # 16-bit: scaled by the image's maximum, so the order of intensities is kept
        assert out.max() == 255 and np.corrcoef(out.ravel(), gray.ravel())[0, 1] > 0.999


# busray.data.images turns Pillow's warning into an error at import; pytest resets the filters per
# test, so the mark puts that filter back (the 100 Mpx case is where Pillow warns first).
@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(40000, 40000), (100000, 2), (9000, 9000), (10000, 10000)])
def test_decompression_bomb_refused_from_the_header(tmp_path, size):
    import struct
    import zlib

    from busray.data.images import read_gray

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", *size, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    with pytest.raises(DataError) as err:
        read_gray(path)
    _assert_one_line(err, "bomb.png", "decompression bomb")


def test_float_images_are_refused_by_mode(tmp_path):
    from PIL import Image

    from busray.data.images import read_gray

    Image.fromarray(np.zeros((8, 8), np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(DataError) as err:
        read_gray(tmp_path / "f.tif")
    _assert_one_line(err, "f.tif", "pixel mode F")


def test_manifest_not_utf8(tmp_path):
    (tmp_path / "manifest.csv").write_bytes("image,mask,label\n\xe9.png,,benign\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        load_dataset(make_cfg(classes=["benign", "malignant"]), tmp_path)
    _assert_one_line(err, "manifest.csv", "not UTF-8")
