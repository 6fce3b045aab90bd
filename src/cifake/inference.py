"""Which precision inference runs in on this machine: bfloat16 where the CPU computes it natively.

bfloat16 pays only on CPUs with AVX-512 BF16 (``avx512_bf16``) or AMX (``amx_bf16``): there the
network runs about 1.5x faster than in float32 (issue 28). Elsewhere oneDNN emulates it and it is
slower than float32, so ``auto`` keeps float32. Only ``cifake predict`` uses this; attacks, evaluation
and the pipeline's ``predict`` stage stay float32, so their outputs do not depend on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import keras

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute bfloat16 natively
CHOICES = ("auto", "float32", "bfloat16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (empty if it cannot be read, e.g. off Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16_flags(flags: frozenset[str] | None = None) -> list[str]:
    """The bfloat16 flags this CPU has (``flags`` defaults to this machine's)."""
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in BF16_FLAGS if flag in flags]


def choose_precision(requested: str = "auto", flags: frozenset[str] | None = None) -> tuple[str, str]:
    """``(precision, why)``: the Keras precision to run in (``float32`` or ``mixed_bfloat16``) and a phrase.

    ``auto`` takes bfloat16 where the CPU has AVX-512 BF16 or AMX, float32 elsewhere; ``float32`` and
    ``bfloat16`` are taken as asked.
    """
    if requested not in CHOICES:
        raise ValueError(f"unknown precision {requested!r}; use one of {CHOICES}")
    if requested != "auto":
        return ("float32" if requested == "float32" else "mixed_bfloat16"), f"{requested}, as asked"
    native = native_bf16_flags(flags)
    if native:
        return "mixed_bfloat16", f"bfloat16 (auto: this CPU has {' and '.join(native)})"
    return "float32", "float32 (auto: this CPU has neither AVX-512 BF16 nor AMX, so bfloat16 would be emulated)"


def label_name(p_fake: float, threshold: float = 0.5) -> str:
    """``Fake`` for a P(Fake) at or above ``threshold``, else ``Real``: what every prediction says."""
    from cifake.images import LABEL_NAMES

    return LABEL_NAMES[int(p_fake >= threshold)]


def for_inference(model: keras.Model, requested: str = "auto") -> tuple[keras.Model, str]:
    """``model`` in the precision :func:`choose_precision` picks (a copy with the same weights), and why.

    ``auto`` keeps a model that joins networks (cifake.generalist) in float32: its threshold sits on ranks among
    photographs scored in float32, and bfloat16's rounding moves images across it (benchmarks/predict_throughput.py
    measures how many). ``bfloat16`` asked for is taken.
    """
    from cifake.model import with_precision

    precision, why = choose_precision(requested)
    if requested == "auto" and precision != "float32" and joins_networks(model):
        precision, why = "float32", "float32 (auto: this model joins networks at ranks calibrated in float32)"
    return (model if precision == "float32" else with_precision(model, precision)), why


def joins_networks(model: keras.Model) -> bool:
    """Whether ``model`` joins separate networks (cifake.generalist), rather than being one network or a view
    average of one (whose single nested network is ``cifake.model.SINGLE_VIEW``)."""
    from cifake.model import SINGLE_VIEW

    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    return bool(nested) and SINGLE_VIEW not in nested
