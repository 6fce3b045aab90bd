"""Inference precision: the bfloat16 copy really computes in bfloat16 (flip-averaged too), agrees with
float32, and is chosen only where the CPU computes bfloat16 natively."""

from pathlib import Path

import keras
import numpy as np
import pytest

from cifake import inference
from cifake.cli import main
from cifake.config import ModelParams
from cifake.errors import EXIT_OK
from cifake.model import SINGLE_VIEW, build_model, predict_proba, save_model, with_flip_average, with_precision

from .conftest import write_image

pytestmark = pytest.mark.model

# P(Fake) of the bfloat16 copy against float32: bfloat16 keeps 8 significant bits, so on these small
# random-weight networks P(Fake) moves by about 1e-3; 0.02 leaves room without hiding a wrong network.
P_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def flip_model():
    keras.utils.set_random_seed(3)
    return with_flip_average(
        build_model(ModelParams(architecture="resnet", widths=(4, 8), blocks_per_stage=1, dense_units=8, dropout=0.0))
    )


def _pixels(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)


def test_the_bf16_copy_of_a_flip_averaged_model_computes_its_network_in_bf16(flip_model):
    mixed = with_precision(flip_model, "mixed_bfloat16")
    view = mixed.get_layer(SINGLE_VIEW)
    hidden = [layer for layer in view.layers if layer.name not in ("pixels", "logits")]
    assert hidden and {layer.compute_dtype for layer in hidden} == {"bfloat16"}
    assert {layer.variable_dtype for layer in hidden} == {"float32"}
    for name in ("logits", "p_fake", "mirror"):
        assert mixed.get_layer(name).compute_dtype == "float32"
    assert view.get_layer("logits").compute_dtype == "float32"

    x = _pixels()
    p32, p16 = predict_proba(flip_model, x), predict_proba(mixed, x)
    assert p16.dtype == np.float32
    assert 0 < np.abs(p16 - p32).max() <= P_TOLERANCE  # computed in bfloat16 (not bit-equal), close to float32
    back = with_precision(mixed, "float32")
    np.testing.assert_array_equal(predict_proba(back, x), p32)  # same weights, back to float32


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert inference.cpu_flags(info) == {"fpu", "sse", "avx512f", "avx512_bf16"}
    assert inference.cpu_flags(tmp_path / "missing") == frozenset()
    assert inference.native_bf16_flags(frozenset({"avx2", "amx_bf16"})) == ["amx_bf16"]


@pytest.mark.parametrize(
    ("flags", "requested", "precision"),
    [
        ({"avx2", "fma"}, "auto", "float32"),  # no native bfloat16: the fallback
        ({"avx512f", "avx512_bf16"}, "auto", "mixed_bfloat16"),
        ({"amx_bf16"}, "auto", "mixed_bfloat16"),
        ({"avx512_bf16"}, "float32", "float32"),  # the flag wins over the CPU
        ({"avx2"}, "bfloat16", "mixed_bfloat16"),
    ],
)
def test_auto_takes_bf16_only_where_the_cpu_has_it(flags, requested, precision):
    chosen, why = inference.choose_precision(requested, frozenset(flags))
    assert chosen == precision and why
    with pytest.raises(ValueError, match="precision"):
        inference.choose_precision("float16", frozenset())


@pytest.mark.parametrize(
    ("flags", "dtype", "said"), [(set(), "float32", "neither"), ({"avx512_bf16"}, "bfloat16", "avx512_bf16")]
)
def test_predict_says_which_path_it_took(tmp_path, flip_model, monkeypatch, capsys, flags, dtype, said):
    monkeypatch.setattr(inference, "cpu_flags", lambda cpuinfo=None: frozenset(flags))
    model, why = inference.for_inference(flip_model)
    assert model.get_layer(SINGLE_VIEW).get_layer("stem_conv").compute_dtype == dtype and said in why

    path = tmp_path / "m.keras"
    save_model(flip_model, path)
    for i in range(3):
        write_image(tmp_path / "in" / f"{i}.jpg", seed=i)
    out = tmp_path / "out.csv"
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "--model", str(path)]) == EXIT_OK
    assert f"computed in {dtype}" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "--model", str(path), "--precision", "float32"]) == 0
    assert "computed in float32, as asked" in capsys.readouterr().err
    assert Path(out).read_text().count("\n") == 4
