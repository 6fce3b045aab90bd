"""Scoring a detector: clean, under white-box attacks, and under everyday changes.

The functions here are what ``evaluate`` runs and what the recipe search
(``benchmarks/recipe_search.py``) ranks recipes by, so both measure the same way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifake.attacks import Attacker, attack_images
from cifake.config import EvaluateParams
from cifake.corruptions import corrupt
from cifake.images import LABEL_NAMES
from cifake.metrics import classification_metrics, correct
from cifake.model import predict_proba

log = logging.getLogger(__name__)

ATTACK_KEYS = ("accuracy", "accuracy_ci95_low", "accuracy_ci95_high", "precision", "recall", "f1")


def eps_key(method: str, eps: float) -> str:
    """``pgd_eps4`` for eps = 4/255 (fractional multiples of 1/255 keep a ``p``: ``pgd_eps2p5``)."""
    return f"{method}_eps{eps * 255:.2f}".rstrip("0").rstrip(".").replace(".", "p")


def attack_sweep(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons,
    *,
    pgd_steps: int,
    step_fraction: float,
    batch_size: int = 256,
    keep: dict | None = None,
    cache: Path | None = None,
) -> dict:
    """FGSM and PGD accuracy (with CI, precision, recall, F1) at every epsilon.

    Returns ``{"fgsm_eps4": {...}, "pgd_eps4": {...}, ..., "gradient_masking_suspect_eps_255": [...]}``;
    an epsilon where PGD scores more than a point above FGSM is flagged (PGD is the
    stronger attack, so that means masked gradients). If ``keep`` is a dict, the PGD
    images are stored in it by epsilon. ``cache``: see :func:`cifake.attacks.attack_images`.
    """
    attacker, masking = Attacker(model), []
    scores: dict[str, Any] = {}
    for eps in epsilons:
        for method in ("fgsm", "pgd"):
            start = time.perf_counter()
            x_adv = attack_images(
                attacker,
                x,
                y,
                method=method,
                eps=eps,
                steps=pgd_steps,
                step_fraction=step_fraction,
                batch_size=batch_size,
                cache=cache,
            )
            scores[eps_key(method, eps)] = attacked_scores(model, x_adv, y, batch_size)
            if method == "pgd" and keep is not None:
                keep[eps] = x_adv
            seconds = time.perf_counter() - start
            log.info(
                "%s eps=%.2f/255: accuracy %.4f (%d images in %.0f s)",
                method,
                eps * 255,
                scores[eps_key(method, eps)]["accuracy"],
                len(y),
                seconds,
            )
        if scores[eps_key("pgd", eps)]["accuracy"] > scores[eps_key("fgsm", eps)]["accuracy"] + 0.01:
            masking.append(round(eps * 255, 2))
    scores["gradient_masking_suspect_eps_255"] = masking
    return scores


def pgd_images(
    source: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epsilons,
    *,
    pgd_steps: int,
    step_fraction: float,
    batch_size: int = 256,
    cache: Path | None = None,
) -> dict[float, np.ndarray]:
    """White-box PGD images against ``source`` at every epsilon: ``{eps: float32 images in [0, 255]}``."""
    attacker = Attacker(source)
    return {
        eps: attack_images(
            attacker,
            x,
            y,
            method="pgd",
            eps=eps,
            steps=pgd_steps,
            step_fraction=step_fraction,
            batch_size=batch_size,
            cache=cache,
        )
        for eps in epsilons
    }


def transfer_scores(
    target: keras.Model, crafted: dict[float, np.ndarray], y: np.ndarray, batch_size: int = 256
) -> dict:
    """``target`` on images crafted against another model (a transfer, black-box attack), per epsilon.

    ``crafted`` is :func:`pgd_images` of the source (or ``attack_sweep``'s kept PGD images); returns
    ``{"pgd_eps4": {accuracy, its interval, precision, recall, f1}, ...}``.
    """
    return {eps_key("pgd", eps): attacked_scores(target, x_adv, y, batch_size) for eps, x_adv in crafted.items()}


def attacked_scores(model: keras.Model, x_adv: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict:
    """``model``'s accuracy (with its interval), precision, recall and F1 on attacked images ``x_adv``."""
    m = classification_metrics(y, predict_proba(model, x_adv, batch_size))
    return {k: m[k] for k in ATTACK_KEYS}


def corruption_scores(
    model: keras.Model, x: np.ndarray, y: np.ndarray, suite: dict, seed: int, batch_size: int = 256
) -> dict:
    """Accuracy under each everyday change of ``suite`` (name -> (kind, value)), with mean and worst.

    ``by_class`` splits each accuracy into the real and the fake images: a change that pushes every
    score one way (e.g. low contrast read as "real") shows as one class falling and the other not.
    """
    per, by_class = {}, {}
    for name, (kind, value) in suite.items():
        right = correct(y, predict_proba(model, corrupt(x, kind, value, seed=seed).astype(np.float32), batch_size))
        per[name] = float(np.mean(right))
        by_class[name] = {LABEL_NAMES[c].lower(): float(np.mean(right[y == c])) for c in (0, 1) if np.any(y == c)}
    worst = min(per, key=lambda name: per[name])
    return {
        "accuracy": per,
        "mean": float(np.mean(list(per.values()))),
        "worst": per[worst],
        "worst_condition": worst,
        "by_class": by_class,
    }


def score_model(
    model: keras.Model, test, subset: np.ndarray, ev, seed: int, keep: dict | None = None, cache: Path | None = None
) -> tuple[dict, np.ndarray]:
    """Everything ``evaluate`` measures of one model on the test set.

    Clean metrics on all of ``test``; FGSM/PGD at every ``ev.epsilons`` and the
    corruption suite ``ev.corruptions`` on the images at ``subset``. ``ev`` is the
    ``evaluate`` section of ``params.yaml``. Returns ``(scores, p_clean)``. With a
    ``cache`` folder the attacks resume after a kill (:func:`cifake.attacks.attack_images`).
    """
    p_clean = predict_proba(model, test.x, ev.batch_size)
    x, y = test.x[subset], test.y[subset]
    suite = {name: (c.kind, c.value) for name, c in ev.corruptions.items()}
    scores = {
        "clean": classification_metrics(test.y, p_clean),
        **attack_sweep(
            model,
            x,
            y,
            ev.epsilons,
            pgd_steps=ev.pgd_steps,
            step_fraction=ev.pgd_step_fraction,
            batch_size=ev.batch_size,
            keep=keep,
            cache=cache,
        ),
        "corruptions": corruption_scores(model, x, y, suite, seed, ev.batch_size),
    }
    return scores, p_clean


def perturb(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: float,
    steps: int,
    step_fraction: float,
    batch_size: int = 256,
    cache: Path | None = None,
) -> np.ndarray:
    """White-box PGD images against ``model``, rounded to uint8 (what a saved PNG holds); resumable with ``cache``."""
    crafted = pgd_images(
        model, x, y, [eps], pgd_steps=steps, step_fraction=step_fraction, batch_size=batch_size, cache=cache
    )
    return np.clip(np.rint(crafted[eps]), 0, 255).astype(np.uint8)


def competition_score(clean_accuracy: float, perturbed_accuracy: float) -> float:
    """The original competition's score: 40 % clean accuracy + 60 % accuracy on the perturbed set."""
    return 0.4 * clean_accuracy + 0.6 * perturbed_accuracy


def sample_sized(ev: EvaluateParams) -> tuple[EvaluateParams, str | None]:
    """``ev`` with the attack set and PGD steps cut to ``sample_attack_subset`` and ``sample_pgd_steps``, and a note
    saying what was cut (None when nothing was).

    For the offline sample only, whose figures just check the pipeline: a cheaper attack keeps its ``dvc repro``
    short. Real data is evaluated as ``params.yaml`` says.
    """
    cuts = {
        "attack_subset": ev.sample_attack_subset,
        "pgd_steps": ev.sample_pgd_steps,
    }
    cuts = {k: v for k, v in cuts.items() if v is not None and v < getattr(ev, k)}
    if not cuts:
        return ev, None
    said = ", ".join(f"{k}={v} instead of {getattr(ev, k)}" for k, v in cuts.items())
    note = f"sample-sized: {said} (evaluate.sample_*, data.source: sample); real data uses the full settings"
    return ev.model_copy(update=cuts), note
