"""`cifake predict` on ordinary and hostile folders: every valid image classified, every bad one reported."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cifake.predict as predict_module
from cifake.cli import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, main
from cifake.predict import CSV_COLUMNS, errors_path, predict_folder, read_labels, score_csv

from .conftest import write_image

pytestmark = pytest.mark.code


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def hostile_folder(root: Path, outside: Path) -> tuple[set[str], set[str]]:
    """Build a folder of good and bad inputs; return (names that must be classified, names that must fail)."""
    good = {
        "plain.jpg": lambda p: write_image(p),
        "big 640x480 (copy).png": lambda p: write_image(p, size=(640, 480), fmt="PNG"),
        "grey.png": lambda p: write_image(p, mode="L", fmt="PNG"),
        "rgba.png": lambda p: write_image(p, mode="RGBA"),
        "palette.gif": lambda p: write_image(p, mode="P", fmt="GIF"),
        "cmyk.jpg": lambda p: write_image(p, mode="CMYK"),
        "tiny 1x1.bmp": lambda p: write_image(p, size=(1, 1), fmt="BMP"),
        "no_extension": lambda p: write_image(p, fmt="PNG"),
        "ünïcødé 画像.webp": lambda p: write_image(p, fmt="WEBP"),
        "-leading-dash.jpg": lambda p: write_image(p),
        "nested/deeper/inner.jpg": lambda p: write_image(p),
        "16bit.png": lambda p: Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(p),
    }
    bad = {
        "empty.jpg": b"",
        "text.jpg": b"just some text\n",
        "page.png": b"<!doctype html><html></html>",
        "program.jpg": b"\x7fELF\x02\x01\x01\x00" + bytes(64),
        "truncated.jpg": None,
    }
    for name, make in good.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    for name, data in bad.items():
        if data is None:
            full = write_image(root / "tmp.jpg", size=(64, 64)).read_bytes()
            (root / "tmp.jpg").unlink()
            data = full[: len(full) // 2]
        (root / name).write_bytes(data)
    secret = write_image(outside / "secret.jpg")
    os.symlink(secret, root / "escape.jpg")
    os.symlink(root / "plain.jpg", root / "inside-link.jpg")
    os.symlink(outside, root / "linked-folder")
    good_names = set(good) | {"inside-link.jpg"}
    bad_names = set(bad) | {"escape.jpg", "linked-folder"}
    return good_names, bad_names


def test_hostile_folder(tmp_path, tiny_model_path, capsys):
    root, outside = tmp_path / "in", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    good, bad = hostile_folder(root, outside)
    out = tmp_path / "out.csv"
    code = main(["predict", str(root), "-o", str(out), "--model", str(tiny_model_path)])
    assert code == EXIT_PARTIAL
    rows = _rows(out)
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert {r["Image Name"] for r in rows} == good
    assert {r["Predicted Label"] for r in rows} <= {"Real", "Fake"}
    errors = {r["Image Name"]: r["Error"] for r in _rows(errors_path(out))}
    assert set(errors) == bad
    assert "outside the input folder" in errors["escape.jpg"]
    stderr = capsys.readouterr().err
    assert "skipped: empty.jpg: empty file" in stderr and f"{len(bad)} skipped" in stderr


def test_clean_folder_exit_ok_and_sorted(tmp_path, tiny_model_path):
    for i in (3, 1, 2):
        write_image(tmp_path / "in" / f"img{i}.jpg", seed=i)
    out = tmp_path / "out.csv"
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_path)]) == EXIT_OK
    assert [r["Image Name"] for r in _rows(out)] == ["img1.jpg", "img2.jpg", "img3.jpg"]
    assert out.stat().st_mode & 0o644 == 0o644  # readable like any file the user writes
    assert _rows(errors_path(out)) == []


def test_threshold_decides_the_label(tmp_path, tiny_model):
    write_image(tmp_path / "in" / "a.jpg")
    low = predict_folder(tiny_model, tmp_path / "in", tmp_path / "low.csv", threshold=1e-6)
    high = predict_folder(tiny_model, tmp_path / "in", tmp_path / "high.csv", threshold=1 - 1e-6)
    assert low.classified == high.classified == 1
    assert _rows(tmp_path / "low.csv")[0]["Predicted Label"] == "Fake"
    assert _rows(tmp_path / "high.csv")[0]["Predicted Label"] == "Real"


def test_empty_folder_gives_header_only(tmp_path, tiny_model_path):
    (tmp_path / "in").mkdir()
    out = tmp_path / "out.csv"
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_path)]) == EXIT_OK
    assert out.read_text().strip() == "Image Name,Predicted Label"


@pytest.mark.parametrize(
    "case", ["missing input", "output folder under a file", "unwritable output folder", "bad model"]
)
def test_fatal_errors_write_nothing(tmp_path, tiny_model_path, capsys, monkeypatch, case):
    write_image(tmp_path / "in" / "a.jpg")
    args = {"input": tmp_path / "in", "out": tmp_path / "out.csv", "model": tiny_model_path}
    if case == "missing input":
        args["input"] = tmp_path / "nope"
    elif case == "output folder under a file":
        (tmp_path / "file").write_text("x")
        args["out"] = tmp_path / "file" / "sub" / "out.csv"
    elif case == "unwritable output folder":
        (tmp_path / "ro").mkdir(mode=0o500)
        args["out"] = tmp_path / "ro" / "out.csv"
        if os.geteuid() == 0:  # root writes anywhere: make the permission check see what a user would
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == tmp_path / "ro" else real_access(p, m))
    else:
        (tmp_path / "m.keras").write_bytes(b"junk")
        args["model"] = tmp_path / "m.keras"
    code = main(["predict", str(args["input"]), "-o", str(args["out"]), "--model", str(args["model"])])
    assert code == EXIT_FATAL
    assert "error:" in capsys.readouterr().err
    assert not args["out"].exists()


def test_interrupted_run_leaves_no_half_csv(tmp_path, tiny_model, monkeypatch):
    for i in range(5):
        write_image(tmp_path / "in" / f"{i}.jpg", seed=i)
    out = tmp_path / "out.csv"
    out.write_text("previous complete results\n")
    calls = {"n": 0}
    real_load = predict_module.load_image

    def interrupted_at_the_fourth_image(path):  # Ctrl-C after the first batch was written
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_load(path)

    monkeypatch.setattr(predict_module, "load_image", interrupted_at_the_fourth_image)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(tiny_model, tmp_path / "in", out, batch_size=2)
    assert calls["n"] == 4
    assert out.read_text() == "previous complete results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out.csv"]


def test_score_csv_counts_missing_as_wrong(tmp_path):
    (tmp_path / "labels.csv").write_text("Image Name,Label\na.png,Fake\nb.png,Real\nc.png,Fake\n")
    (tmp_path / "pred.csv").write_text("Image Name,Predicted Label\na.png,Fake\nb.png,Fake\n")
    s = score_csv(tmp_path / "pred.csv", read_labels(tmp_path / "labels.csv"))
    assert s["n"] == 3 and s["missing_predictions"] == 1
    assert s["accuracy"] == pytest.approx(1 / 3)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (1, 1, 1, 0)


def test_console_script_usage_errors():
    result = subprocess.run(
        [sys.executable, "-m", "cifake.cli", "predict", "x", "-o", "y.csv", "--threshold", "1.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "threshold must be in (0, 1)" in result.stderr


def test_scoring_by_folder_on_the_cifake_layout(tmp_path, tiny_model_path, capsys):
    for cls in ("REAL", "FAKE"):
        for i in range(3):
            write_image(tmp_path / "test" / cls / f"{i}.jpg", seed=i + (10 if cls == "FAKE" else 0))
    out = tmp_path / "out.csv"
    args = ["predict", str(tmp_path / "test"), "-o", str(out), "--model", str(tiny_model_path), "--labels-from-folders"]
    assert main(args) == EXIT_OK
    rows = _rows(out)
    expected = sum((r["Image Name"].startswith("FAKE/")) == (r["Predicted Label"] == "Fake") for r in rows) / 6
    assert f"scored 6 images: accuracy {expected:.4f}" in capsys.readouterr().err


def test_output_inside_the_input_folder_is_not_classified(tmp_path, tiny_model_path):
    write_image(tmp_path / "a.jpg")
    out = tmp_path / "results.csv"
    args = ["predict", str(tmp_path), "-o", str(out), "--model", str(tiny_model_path)]
    assert main(args) == EXIT_OK
    assert main(args) == EXIT_OK  # the first run's CSV and errors file are not inputs the second time
    assert [r["Image Name"] for r in _rows(out)] == ["a.jpg"]


def test_prefetch_keeps_order_and_bounds_what_is_read_ahead():
    import threading

    from cifake.predict import prefetch

    produced = []

    def items():
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(items(), depth=2):
        seen.append(item)
        # the producer is at most depth items, plus the one it holds, ahead of the consumer
        assert len(produced) - len(seen) <= 3
    assert seen == list(range(50))
    assert not [t for t in threading.enumerate() if t.name == "prefetch"]


def test_prefetch_hands_producer_errors_to_the_consumer_and_stops_when_abandoned():
    import threading

    from cifake.predict import prefetch

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetch(failing()))

    endless = prefetch(iter(range(10**9)), depth=1)
    assert next(endless) == 0
    endless.close()  # the consumer stops early (e.g. model error): the producer must not hang around
    assert not [t for t in threading.enumerate() if t.name == "prefetch" and t.is_alive()]


def test_scores_column_matches_the_labels_at_any_threshold(tmp_path, tiny_model_path):
    """--scores adds P(Fake) after the seed's two columns; the label is P(Fake) >= threshold."""
    root = tmp_path / "in"
    for i in range(12):
        write_image(root / f"{i}.jpg", seed=i)
    plain, scored = tmp_path / "plain.csv", tmp_path / "scored.csv"
    assert main(["predict", str(root), "-o", str(plain), "--model", str(tiny_model_path)]) == EXIT_OK
    assert main(["predict", str(root), "-o", str(scored), "--model", str(tiny_model_path), "--scores"]) == EXIT_OK
    rows = _rows(scored)
    assert list(rows[0]) == [*CSV_COLUMNS, "P(Fake)"]
    assert [(r["Image Name"], r["Predicted Label"]) for r in rows] == [tuple(r.values()) for r in _rows(plain)]
    p = [float(r["P(Fake)"]) for r in rows]
    threshold = float(np.median(p))
    again = tmp_path / "again.csv"
    main(["predict", str(root), "-o", str(again), "--model", str(tiny_model_path), "--threshold", str(threshold)])
    assert [r["Predicted Label"] for r in _rows(again)] == ["Fake" if v >= threshold else "Real" for v in p]


def test_missing_output_folders_are_created(tmp_path, tiny_model_path):
    write_image(tmp_path / "in" / "a.jpg")
    out = tmp_path / "new" / "deeper" / "out.csv"
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_path)]) == EXIT_OK
    assert [r["Image Name"] for r in _rows(out)] == ["a.jpg"]


def test_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "AI-generated" in text and "cifake predict photos/ -o predictions.csv" in text
    assert "``" not in text and ":func:" not in text  # no reStructuredText from docstrings


def test_single_view_skips_the_mirror_average(tmp_path, tiny_model):
    """A flip-averaged model scores the image and its mirror alike; --single-view gives the bare network's P(Fake)."""
    from cifake.images import load_image
    from cifake.model import save_model, with_flip_average

    root = tmp_path / "in"
    for i in range(6):
        write_image(root / f"{i}.png", seed=i)
    model_path = tmp_path / "flip.keras"
    save_model(with_flip_average(tiny_model), model_path)
    scores = {}
    for extra in ([], ["--single-view"]):
        out = tmp_path / f"out{len(scores)}.csv"
        args = ["predict", str(root), "-o", str(out), "--model", str(model_path), "--scores", "--precision", "float32"]
        assert main([*args, *extra]) == EXIT_OK  # float32: the references below are (auto is bfloat16 on AVX-512 BF16)
        scores[tuple(extra)] = {r["Image Name"]: float(r["P(Fake)"]) for r in _rows(out)}
    names = sorted(scores[()])
    x = np.stack([load_image(root / n) for n in names]).astype(np.float32)
    single = np.reshape(tiny_model(x), [-1])
    averaged = np.reshape(with_flip_average(tiny_model)(x), [-1])
    assert np.abs(single - averaged).max() > 1e-4  # the two modes differ on these images
    np.testing.assert_allclose([scores[("--single-view",)][n] for n in names], single, atol=1e-4)
    np.testing.assert_allclose([scores[()][n] for n in names], averaged, atol=1e-4)
