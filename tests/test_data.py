"""Decoding any image, fetching raw layouts safely, and preprocessing (duplicates, leakage, split)."""

import csv
import io
import os
import time
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from cifake.dataset import Split, labels_path, preprocess, split_indices
from cifake.images import LABEL_NAMES, LABEL_OF_CLASS, ImageError, decode_image
from cifake.sources import DataError, copy_directory, download_kaggle, extract_archive, list_raw

from .conftest import make_layout

pytestmark = pytest.mark.data


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_labels_come_from_the_folder_names_not_the_listing_order(tmp_path):
    """Listing puts FAKE before REAL: every FAKE image must still get label 1 (Fake), every REAL one 0."""
    make_layout(tmp_path / "raw", per_class=5)
    preprocess(tmp_path / "raw", tmp_path / "out", tmp_path / "t1", val_fraction=0.2, seed=0)
    test = Split.load(tmp_path / "out" / "test.npz")
    with open(labels_path(tmp_path / "t1"), newline="") as fh:
        rows = {r["Image Name"]: r for r in csv.DictReader(fh)}
    for name, y in zip(test.names, test.y, strict=True):
        source_class = rows[name]["Source"].split("/")[1]
        assert y == LABEL_OF_CLASS[source_class] == (1 if source_class == "FAKE" else 0)
        assert rows[name]["Label"] == LABEL_NAMES[y] == ("Fake" if source_class == "FAKE" else "Real")


@pytest.mark.parametrize(
    ("img", "colour"),
    [
        (Image.new("L", (32, 32), 128), (128, 128, 128)),
        (Image.new("RGBA", (40, 20), (10, 20, 30, 0)), (255, 255, 255)),  # transparent -> white
        (Image.new("P", (32, 32)), (0, 0, 0)),
        (Image.new("CMYK", (32, 32), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("1", (3, 3)), (0, 0, 0)),
        (Image.new("RGB", (1, 1), (255, 0, 0)), (255, 0, 0)),
        (Image.new("RGB", (300, 200), (0, 255, 0)), (0, 255, 0)),
        (Image.new("RGB", (32, 32), (30, 90, 200)), (30, 90, 200)),  # channel order kept
    ],
    ids=["grey", "rgba", "palette", "cmyk", "bilevel", "1x1", "large", "rgb-order"],
)
def test_decode_any_mode_and_size(img, colour):
    fmt = "JPEG" if img.mode in ("L", "CMYK", "RGB") else "PNG"
    out = decode_image(_bytes(img, fmt))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.abs(out.reshape(-1, 3).mean(axis=0) - np.array(colour)).max() <= 4  # JPEG rounding only


def test_decode_16bit_keeps_brightness():
    arr = np.full((32, 32), 65535 // 2, dtype=np.uint16)
    out = decode_image(_bytes(Image.fromarray(arr), "PNG"))
    assert 120 <= out.mean() <= 135


def test_decode_transparent_pixels_become_white():
    out = decode_image(_bytes(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "PNG"))
    assert out.min() == 255


def test_decode_animated_gif_takes_first_frame():
    frames = [Image.new("P", (32, 32), c) for c in (1, 2, 3)]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    assert decode_image(data.getvalue()).shape == (32, 32, 3)


def test_decode_applies_exif_orientation():
    img = Image.new("RGB", (64, 32), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 32, 32))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display: the white half ends on top
    out = decode_image(_bytes(img, "JPEG", exif=exif, quality=95))
    assert out[:16].mean() > 200 and out[16:].mean() < 60


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, I am text", "not an image"),
        (b"<html><body>no</body></html>", "not an image"),
        (b"\x7fELF\x02\x01\x01" + bytes(100), "not an image"),
    ],
    ids=["zero-byte", "text", "html", "executable"],
)
def test_decode_rejects_non_images(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_decode_rejects_truncated_and_corrupt():
    good = _bytes(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_image(good[: len(good) // 2])
    jpeg = _bytes(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageError, match="truncated"):
        decode_image(jpeg[: int(len(jpeg) * 0.6)])
    with pytest.raises(ImageError):
        decode_image(jpeg[:2] + b"\xff\xc0" + bytes(60))  # SOI then a broken frame header


def test_decompression_bomb_refused_fast():
    # A valid PNG header claiming 100000 x 100000 pixels; decoding it would need 30 GB.
    bomb = _bytes(Image.new("1", (100, 100)), "PNG")
    ihdr = b"IHDR" + (100000).to_bytes(4, "big") * 2 + bomb[24:29]
    bomb = bomb[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + bomb[33:]
    start = time.perf_counter()
    with pytest.raises(ImageError, match="refused"):
        decode_image(bomb)
    assert time.perf_counter() - start < 5


# ------------------------------------------------------------------ archives


def _zip(path, entries: dict[str, bytes], symlinks=()):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return path


def _layout_entries(prefix="") -> dict[str, bytes]:
    jpg = _bytes(Image.new("RGB", (32, 32), (9, 9, 9)), "JPEG")
    return {f"{prefix}{s}/{c}/{i}.jpg": jpg for s in ("train", "test") for c in ("REAL", "FAKE") for i in range(2)}


def test_extract_good_archive_with_prefix(tmp_path):
    entries = _layout_entries("cifake/") | {"cifake/README.txt": b"hi", "cifake/train/REAL/notes.txt": b"x"}
    info = extract_archive(_zip(tmp_path / "a.zip", entries), tmp_path / "raw")
    assert info["files"] == {"test/FAKE": 2, "test/REAL": 2, "train/FAKE": 2, "train/REAL": 2}
    assert info["skipped_entries"] == 2
    assert len(list_raw(tmp_path / "raw")) == 8


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"../evil.jpg": b"x"}, "escape"),
        ({"train/REAL/../../../evil.jpg": b"x"}, "escape"),
        ({"/etc/evil.jpg": b"x"}, "absolute"),
        ({"C:\\evil.jpg": b"x"}, "absolute"),
    ],
)
def test_archive_path_traversal_refused(tmp_path, extra, message):
    archive = _zip(tmp_path / "a.zip", _layout_entries() | extra)
    with pytest.raises(DataError, match=message):
        extract_archive(archive, tmp_path / "out" / "raw")
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "out" / "raw").exists()


def test_archive_symlink_refused(tmp_path):
    archive = _zip(tmp_path / "a.zip", _layout_entries(), symlinks=[("train/REAL/link.jpg", "/etc/passwd")])
    with pytest.raises(DataError, match="symbolic link"):
        extract_archive(archive, tmp_path / "raw")


def test_archive_duplicate_names_refused(tmp_path):
    path = tmp_path / "a.zip"
    _zip(path, _layout_entries())
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("train/REAL/0.jpg", b"again")
    with pytest.raises(DataError, match="duplicate"):
        extract_archive(path, tmp_path / "raw")


def test_archive_bomb_refused(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in _layout_entries().items():
            zf.writestr(name, data)
        zf.writestr("train/REAL/bomb.jpg", bytes(10_000_000))
    with pytest.raises(DataError, match="compression ratio"):
        extract_archive(path, tmp_path / "raw")


def test_archive_wrong_layout_says_what_it_found(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"images/cat.jpg": b"x", "labels.csv": b"y"})
    with pytest.raises(
        DataError, match=r"expected entries under train/REAL.*found top-level entries \['images', 'labels.csv'\]"
    ):
        extract_archive(archive, tmp_path / "raw")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        extract_archive(tmp_path / "bad.zip", tmp_path / "raw")


def test_directory_source_finds_nested_layout_and_explains_missing_one(tmp_path):
    make_layout(tmp_path / "download" / "cifake", per_class=2)
    info = copy_directory(tmp_path / "download", tmp_path / "raw")
    assert sum(info["files"].values()) == 8
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "img.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match=r"expected folders train/REAL.*found \['img.jpg'\]"):
        copy_directory(tmp_path / "flat", tmp_path / "raw2")


def test_kaggle_offline_fails_fast_naming_other_sources(tmp_path, monkeypatch):
    import kagglehub

    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3t-key-value")

    def offline(*args, **kwargs):  # the fake transport: what kagglehub raises with no network
        raise ConnectionError("Failed to establish a new connection: [Errno -3] name resolution (key=s3cr3t-key-value)")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        download_kaggle("birdy654/cifake-real-and-ai-generated-synthetic-images", tmp_path / "raw")
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "data.source=archive" in message and "data.source=directory" in message and "data.source=sample" in message
    assert "s3cr3t" not in message


# ------------------------------------------------------------------ preprocess


def test_preprocess_reports_duplicates_leakage_and_unreadable(tmp_path):
    raw = make_layout(tmp_path / "raw", per_class=6)
    fake_train = sorted((raw / "train" / "FAKE").iterdir())
    (raw / "train" / "FAKE" / "dup.jpg").write_bytes(fake_train[0].read_bytes())  # one duplicate group
    (raw / "test" / "FAKE" / "leak.jpg").write_bytes(fake_train[1].read_bytes())  # test image also in train
    (raw / "train" / "REAL" / "broken.jpg").write_bytes(b"not really a jpeg")
    report = preprocess(raw, tmp_path / "proc", tmp_path / "test1", val_fraction=0.25, seed=0)

    assert report["unreadable"] == 1
    assert report["duplicate_groups"]["train/FAKE"] == 1
    assert report["test_in_train"] == {"REAL": 0, "FAKE": 1}
    train, val, test = (Split.load(tmp_path / "proc" / f"{n}.npz") for n in ("train", "val", "test"))
    assert len(train.y) + len(val.y) == 6 + 7  # 6 REAL readable + 7 FAKE
    assert set(val.y) == {0, 1}  # stratified
    assert train.x.shape[1:] == (32, 32, 3) and train.x.dtype == np.uint8
    files = sorted(os.listdir(tmp_path / "test1"))
    assert len(files) == len(test.y) == 13
    labels = labels_path(tmp_path / "test1").read_text().splitlines()
    assert labels[0] == "Image Name,Label,Source" and len(labels) == 14
    # the label of every materialised file matches the array
    by_name = {line.split(",")[0]: line.split(",")[1] for line in labels[1:]}
    assert [by_name[n] for n in test.names] == [LABEL_NAMES[v] for v in test.y]
    assert "broken.jpg" in (tmp_path / "proc" / "errors.csv").read_text()


def test_validation_split_is_redrawn_from_the_labels_alone(tmp_path):
    """Benchmarks that hold out the shipped models' validation photographs redraw them with ``split_indices``
    from the train images' labels in listing order: it must give preprocess's val.npz exactly."""
    raw = make_layout(tmp_path / "raw", per_class=10)
    preprocess(raw, tmp_path / "proc", tmp_path / "test1", val_fraction=0.3, seed=7)
    train_files = [(cls, path) for split, cls, path in list_raw(raw) if split == "train"]
    labels = np.array([LABEL_OF_CLASS[cls] for cls, _ in train_files])
    _, idx_val = split_indices(labels, val_fraction=0.3, seed=7)
    val = Split.load(tmp_path / "proc" / "val.npz")
    assert list(val.names) == [train_files[i][1].relative_to(raw).as_posix() for i in idx_val]
    assert sorted(idx_val) != list(range(len(idx_val)))  # drawn, not the first images
