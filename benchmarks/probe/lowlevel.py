"""Scores of low-level statistics: JPEG-domain, colour, periodic traces, nearest photographs, a denoiser's error."""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path

import numpy as np

from .common import cifake, fake_sources, nearest_distances, remembered, score_kinds, trained_minutes

# JPEG's luminance table (ITU T.81 Annex K) scaled as libjpeg does for quality 75: the table of every image here
ANNEX_K = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)  # fmt: skip


Q75 = np.clip((ANNEX_K * 50 + 50) // 100, 1, 255)


def spectrum_features(x: np.ndarray) -> np.ndarray:
    """Per image, for each of the 64 DCT frequencies of its luminance's 8x8 blocks quantised as JPEG q75 stores
    them: the mean log magnitude and the shares of zeros and of ones (192 numbers; Benford-style statistics)."""
    from scipy.fft import dctn

    luma = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) - 128
    n, h, w = luma.shape
    blocks = luma.reshape(n, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)
    levels = np.abs(np.round(dctn(blocks, axes=(-2, -1), norm="ortho") / Q75)).reshape(n, -1, 64)
    return np.concatenate([np.log1p(levels).mean(1), (levels == 0).mean(1), (levels == 1).mean(1)], axis=1)


def _spectrum_proba(probe, images: np.ndarray) -> np.ndarray:
    return probe.predict_proba(spectrum_features(images))[:, 1]


def cmd_spectrum(args) -> None:
    """Low-level statistics without a network: JPEG-domain DCT statistics (:func:`spectrum_features`) scored
    one-class (Mahalanobis distance to 12 000 train/REAL images) and by logistic regressions against train/FAKE
    (SD) and against ``--fakes``."""
    from sklearn.covariance import LedoitWolf
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = cifake(args)
    real = spectrum_features(data["train_REAL"][:12000])
    one_class = LedoitWolf().fit(real)
    scores = {"oneclass": lambda images: one_class.mahalanobis(spectrum_features(images))}
    fakes = fake_sources(args, args.fakes)
    for kind, sources in (("linear-sd", {"sd": data["train_FAKE"][:12000]}), ("linear-fakes", fakes)):
        fake = np.concatenate([spectrum_features(x) for x in sources.values()])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
        probe.fit(np.r_[real, fake], np.r_[np.zeros(len(real)), np.ones(len(fake))])
        scores[kind] = partial(_spectrum_proba, probe)
    score_kinds(
        args,
        data,
        "spectrum",
        scores,
        lambda kind: {"fakes": args.fakes if kind == "linear-fakes" else kind, "input": "dct-statistics"},
        skip=lambda kind: fakes if kind == "linear-fakes" else {},
    )


def colour_features(x: np.ndarray) -> np.ndarray:
    """Per image (10 numbers): saturation's mean and spread, the mean of each pixel's largest and smallest channel,
    the spread of all values, the spreads of luma and of the two chroma channels, and the chroma's mean size."""
    x = x.astype(np.float32) / 255
    high, low = x.max(-1), x.min(-1)
    saturation = (high - low) / (high + 1.0e-6)
    ycc = x @ np.array([[0.299, -0.1687, 0.5], [0.587, -0.3313, -0.4187], [0.114, 0.5, -0.0813]], np.float32)
    features = [saturation.mean((1, 2)), saturation.std((1, 2)), high.mean((1, 2)), low.mean((1, 2)), x.std((1, 2, 3))]
    features += [ycc[..., c].std((1, 2)) for c in range(3)] + [np.abs(ycc[..., c]).mean((1, 2)) for c in (1, 2)]
    return np.stack(features, 1)


def lattice_features(x: np.ndarray) -> np.ndarray:
    """Per image (27 numbers): for luma and both chromas, the log power at each frequency of the 4-pixel lattice
    (multiples of 8 cycles in 32, one of each conjugate pair) over the mean power of its eight neighbours: the
    periodic traces of stacked 2x upsampling, and JPEG's 8x8 grid, which every image here shares (averaged over a
    folder: :func:`lattice_shifts`)."""
    ycc = x.astype(np.float32) @ np.array([[0.299, -0.1687, 0.5], [0.587, -0.3313, -0.4187], [0.114, 0.5, -0.0813]])
    power = np.abs(np.fft.fft2(ycc - ycc.mean((1, 2), keepdims=True), axes=(1, 2))) ** 2 + 1.0e-3
    lattice = [(a, b) for a in (0, 8, 16, 24) for b in (0, 8, 16, 24) if (a, b) != (0, 0)]
    unique = [(a, b) for i, (a, b) in enumerate(lattice) if ((-a) % 32, (-b) % 32) not in lattice[:i]]
    around = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
    columns = [
        np.log(power[:, a, b]) - np.log(np.mean([power[:, (a + i) % 32, (b + j) % 32] for i, j in around], 0))
        for a, b in unique
    ]
    return np.concatenate(columns, 1)


def nearest_closeness(train: np.ndarray, k: int = 10):
    """Minus each image's pixel-space distance to its ``k``-th nearest image of ``train``."""
    flat = train.reshape(len(train), -1).astype(np.float32) / 255

    def score(images: np.ndarray) -> np.ndarray:
        return -nearest_distances(images.reshape(len(images), -1).astype(np.float32) / 255, flat, k, chunk=500)

    return score


def cmd_lowlevel(args) -> None:
    """Scores without a network: colour statistics (:func:`colour_features`) and periodic traces
    (:func:`lattice_features`) one-class (Mahalanobis distance to 20 000 train/REAL images), and closeness to the
    training photographs (``nn-pixels``: a generator's images might sit nearer the photographs it learnt from than
    new photographs do; all 50 000 train/REAL)."""
    from sklearn.covariance import LedoitWolf

    data = cifake(args)
    one_class = LedoitWolf().fit(colour_features(data["train_REAL"][:20000]))
    periodic = LedoitWolf().fit(lattice_features(data["train_REAL"][:20000]))
    scores = {
        "colour": lambda images: one_class.mahalanobis(colour_features(images)),
        "lattice": lambda images: periodic.mahalanobis(lattice_features(images)),
        "nn-pixels": nearest_closeness(data["train_REAL"]),
    }

    def describe(kind: str) -> dict:
        shifts = {"folder_mean_shift": lattice_shifts(args.validation, data["test_REAL"])} if kind == "lattice" else {}
        return {"fakes": "none", "input": kind} | shifts

    score_kinds(args, data, "lowlevel", scores, describe, lambda kind: {})


def lattice_shifts(validation: Path, test_real: np.ndarray) -> dict[str, float]:
    """Per folder of ``validation``, and for test REAL 2000-3999 as a yardstick: the largest shift, either way, of
    its images' mean :func:`lattice_features` from test REAL 0-1999's (natural log)."""
    from cifake.generalisation import load_set

    reference = lattice_features(test_real[:2000]).mean(0)
    sets = {"test REAL 2000-3999": test_real[2000:4000]}
    sets |= load_set(validation)[0]
    shifts = {name: lattice_features(images).mean(0) - reference for name, images in sets.items()}
    return {name: round(float(shift[np.abs(shift).argmax()]), 3) for name, shift in shifts.items()}


def cmd_manifold(args) -> None:
    """Zero-shot scores from a denoiser trained on photographs only (the ``diffusion`` step ``--name``): how well it
    predicts the noise added to an image (a diffusion model's error as a detector reads it: DIRE, Wang et al. 2023;
    SeDID, Ma et al. 2023; Brokman et al. 2025). Generators' images may sit nearer the photographs' manifold than new
    photographs do, as their features sit nearer the classes' middles (``layers``). Rows ``manifold-NAME:kind``:
    the error at each of ``--strengths`` (diffusion times) turned round (``easy-tT``), the Mahalanobis distance of
    the log errors over all times from those of test REAL 4000-5999 (``profile``, one-class, either way), and a
    logistic regression on them trained on test REAL 6000-7999 against 2 000 Stable Diffusion images of train/FAKE
    (``profile-sd``). The denoiser learnt every train/REAL photograph, so none of them is a reference here."""
    from sklearn.covariance import LedoitWolf
    from sklearn.linear_model import LogisticRegression

    from cifake.generators import load_denoiser

    data = cifake(args)
    errors = denoising_errors(load_denoiser(args.root / args.name / "denoiser.keras"), args.strengths, args.seed)
    one_class = cache(lambda: LedoitWolf().fit(errors(data["test_REAL"][4000:6000])))
    train = np.r_[data["test_REAL"][6000:8000], data["train_FAKE"][:2000]]
    to_sd = cache(lambda: LogisticRegression(max_iter=1000).fit(errors(train), np.repeat([0, 1], 2000)))
    scores: dict = {f"easy-t{t:g}": (lambda images, i=i: -errors(images)[:, i]) for i, t in enumerate(args.strengths)}
    scores["profile"] = lambda images: one_class().mahalanobis(errors(images))
    scores["profile-sd"] = lambda images: to_sd().decision_function(errors(images))
    minutes = trained_minutes(args.root / args.name)
    describe = {"fakes": "none", "denoiser": args.name, "times": list(args.strengths)}
    prefix = f"manifold-{args.name}"
    score_kinds(args, data, prefix, scores, lambda kind: describe | {"input": kind}, lambda k: {}, minutes)


def denoising_errors(denoiser, times, seed: int, draws: int = 4, batch: int = 500):
    """images -> (N, len(times)): at each diffusion time, the log mean squared error of ``denoiser``'s prediction of
    the noise added to each image, averaged over ``draws`` noises drawn per image from ``seed``."""
    import tensorflow as tf

    from cifake.generators import diffusion_rates, unit_pixels

    rates = [tuple(float(v) for v in diffusion_rates(tf.constant(float(t)))) for t in times]

    def of_batch(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        unit = unit_pixels(x).numpy()
        out = np.zeros((len(x), len(rates)), np.float32)
        for _ in range(draws):
            noise = rng.standard_normal(unit.shape).astype(np.float32)
            for j, (noise_rate, signal_rate) in enumerate(rates):
                variance = np.full((len(x), 1, 1, 1), noise_rate**2, np.float32)
                predicted = denoiser([signal_rate * unit + noise_rate * noise, variance], training=False)
                out[:, j] += np.mean((np.asarray(predicted) - noise) ** 2, axis=(1, 2, 3)) / draws
        return np.log(out)

    def errors(images: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.concatenate([of_batch(images[i : i + batch], rng) for i in range(0, len(images), batch)])

    return remembered(errors)
