"""Own training fakes (issue 40): the generators, the files they write, mixing them into training, and
scoring a detector on generators it never saw."""

import numpy as np
import pytest
from PIL import Image

from cifake.config import parse_params
from cifake.dataset import Split
from cifake.fakes import JPEG_QUALITY, grid, jpeg_bytes, mix_fakes, read_fakes, with_own_fakes, write_fakes
from cifake.generalisation import generator_scores, plot_rows, score_generator_set, score_sets

from .conftest import ROOT, jpeg_q75_tables


def _images(n, value, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(value, 10, (n, 32, 32, 3)), 0, 255).astype(np.uint8)


@pytest.mark.data
def test_fakes_are_written_as_cifake_is_encoded(tmp_path):
    write_fakes(_images(5, 100), tmp_path / "gen_sample")
    files = sorted((tmp_path / "gen_sample").iterdir())
    assert [f.name for f in files] == [f"{i:05d}.jpg" for i in range(5)]
    for f in files:
        with Image.open(f) as img:
            assert (img.format, img.size, img.mode) == ("JPEG", (32, 32), "RGB")
            assert img.quantization == jpeg_q75_tables()  # JPEG quality 75, CIFAKE's tables
    assert not (tmp_path / "gen_sample.partial").exists()
    assert JPEG_QUALITY == 75 and jpeg_bytes(_images(1, 100)[0])[:2] == b"\xff\xd8"


@pytest.mark.data
def test_mixing_replaces_a_share_of_the_fakes_and_keeps_the_balance():
    train = Split(_images(40, 60), np.r_[np.zeros(20), np.ones(20)].astype(np.int64), np.arange(40).astype(str))
    own = {"a_sample": _images(10, 250, seed=1), "b_resynth": _images(10, 5, seed=2)}
    mixed = mix_fakes(train, own, {"a_sample": 0.25, "b_resynth": 0.1}, seed=3)
    assert np.array_equal(mixed.y, train.y) and mixed.x.shape == train.x.shape
    from_a = [n.startswith("a_sample/") for n in mixed.names]
    from_b = [n.startswith("b_resynth/") for n in mixed.names]
    assert sum(from_a) == 5 and sum(from_b) == 2  # 25 % and 10 % of the 20 fakes
    assert all(mixed.y[np.array(from_a) | np.array(from_b)] == 1)  # real images are never replaced
    assert np.array_equal(mixed.x[mixed.y == 0], train.x[train.y == 0])
    assert (mixed.x[np.array(from_a)].mean() > 200) and (mixed.x[np.array(from_b)].mean() < 50)
    again = mix_fakes(train, own, {"a_sample": 0.25, "b_resynth": 0.1}, seed=3)
    assert np.array_equal(again.x, mixed.x)
    with pytest.raises(ValueError, match="fakes wanted"):
        mix_fakes(train, own, {"a_sample": 0.9}, seed=3)


@pytest.mark.data
def test_own_fakes_are_read_back_from_their_folders(tmp_path):
    write_fakes(_images(6, 250), tmp_path / "a_sample")
    write_fakes(_images(6, 5), tmp_path / "b_resynth")
    train = Split(_images(20, 60), np.r_[np.zeros(10), np.ones(10)].astype(np.int64), np.arange(20).astype(str))
    same, digest = with_own_fakes(train, tmp_path, {}, seed=0)
    assert same is train and digest == ""
    mixed, digest = with_own_fakes(train, tmp_path, {"b_resynth": 0.5}, seed=0)
    assert sum(n.startswith("b_resynth/") for n in mixed.names) == 5 and len(digest) == 64
    assert with_own_fakes(train, tmp_path, {"b_resynth": 0.3}, seed=0)[1] != digest  # other images: other hash
    with pytest.raises(FileNotFoundError, match="no fakes of"):
        read_fakes(tmp_path, ["c_sample"])


@pytest.mark.data
def test_grid_tiles_images_in_rows():
    x = np.stack([np.full((32, 32, 3), i, np.uint8) for i in range(10)])
    g = grid(x, columns=4, scale=1)
    assert g.shape == (3 * 32, 4 * 32, 3)
    assert g[0, 32 * 3, 0] == 3 and g[32, 0, 0] == 4 and g[64, 32, 0] == 9 and g[64, 64, 0] == 0


@pytest.mark.code
def test_fakes_params_are_checked():
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["fakes"] = {"diff_nearest_resynth": 0.3}
    assert parse_params(raw).train.fakes == {"diff_nearest_resynth": 0.3}
    for wrong, message in (
        ({"no_such_generator": 0.3}, "the fakes stage makes"),
        ({"diff_nearest_resynth": 0.8, "diff_nearest_sample": 0.4}, "at most 1"),
    ):
        raw["train"]["fakes"] = wrong
        with pytest.raises(ValueError, match=message):
            parse_params(raw)


def _generator_set(root):
    """Three generators: bright images, dark images, and a mixed folder with an unreadable file."""
    write_fakes(_images(8, 230), root / "bright")
    write_fakes(_images(4, 20), root / "dark")
    write_fakes(np.concatenate([_images(3, 230), _images(1, 20)]), root / "mixed")
    (root / "mixed" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "empty").mkdir()


def _brightness_detector(x):
    return (np.asarray(x, np.float32).mean(axis=(1, 2, 3)) > 128).astype(np.float32)


@pytest.mark.data
def test_each_generator_is_scored_on_its_own_images(tmp_path):
    _generator_set(tmp_path)
    p_real = np.r_[np.zeros(9), np.ones(1)].astype(np.float32)  # one real image of ten called Fake
    out = score_generator_set(_brightness_detector, tmp_path, p_real)
    rows = out["per_generator"]
    assert sorted(rows) == ["bright", "dark", "mixed"]  # the empty folder is no generator
    assert (rows["bright"]["caught"], rows["dark"]["caught"], rows["mixed"]["caught"]) == (1.0, 0.0, 0.75)
    assert (rows["bright"]["images"], rows["dark"]["images"], rows["mixed"]["images"]) == (8, 4, 4)
    assert rows["bright"]["ci_low"] < 1.0 == rows["bright"]["ci_high"]  # Wilson: 8 of 8 is not a certainty
    assert rows["bright"]["roc_auc"] == pytest.approx(1 - 1 / 10 / 2)  # the real image called Fake ties
    assert rows["dark"]["roc_auc"] == pytest.approx(0.5 - 1 / 10 / 2)
    assert out["mean"]["mean_caught"] == pytest.approx((1.0 + 0.0 + 0.75) / 3)  # each generator counts once
    assert out["mean"]["min_caught"] == 0.0 and out["real_called_real"] == pytest.approx(0.9)
    assert out["skipped"] == [next(s for s in out["skipped"] if s.startswith("mixed/broken.jpg: "))]


@pytest.mark.data
def test_a_missing_set_is_recorded_as_skipped_and_rows_name_their_set(tmp_path):
    _generator_set(tmp_path / "set")
    p_real = np.zeros(4, np.float32)
    models = {"robust_model": (_brightness_detector, p_real)}
    scored = score_sets({"mine": str(tmp_path / "set"), "theirs": str(tmp_path / "absent")}, models)
    assert scored["theirs"] == {"path": str(tmp_path / "absent"), "skipped": "folder not found"}
    rows = {r["generator"]: r["caught"] for r in plot_rows(scored, "robust_model")}
    assert rows == {"mine/bright": 1.0, "mine/dark": 0.0, "mine/mixed": 0.75, "mine (mean)": pytest.approx(1.75 / 3)}


@pytest.mark.data
def test_generator_scores_take_the_threshold():
    p = np.array([0.2, 0.4, 0.6, 0.8], np.float32)
    assert generator_scores(p, np.zeros(2, np.float32))["caught"] == 0.5
    assert generator_scores(p, np.zeros(2, np.float32), threshold=0.3)["caught"] == 0.75


@pytest.mark.code
def test_the_note_quotes_the_figures_measured_for_that_very_file(tmp_path):
    from cifake.fileio import sha256_file, write_json
    from cifake.generalisation import figures_for, ood_note

    model = tmp_path / "m.keras"
    model.write_bytes(b"weights")
    assert figures_for(model) is None and "not measured" in ood_note(None)
    rows = {"a": {"caught": 0.02}, "b": {"caught": 0.5}}
    entry = {"sha256": sha256_file(model), "sets": {"g32": {"per_generator": rows, "mean": {"mean_caught": 0.26}}}}
    write_json(tmp_path / "generalisation.json", {"m.keras": entry})
    note = ood_note(figures_for(model))
    assert "on 2 other generators (g32) it called 26.0% of the images Fake (2%-50% per generator)" in note
    model.write_bytes(b"other weights")  # the figures belong to another file now
    assert figures_for(model) is None
