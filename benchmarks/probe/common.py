"""What every probe step shares: the decoded CIFAKE arrays, the results file and how a score becomes a row."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "generalisation.jsonl"
log = logging.getLogger("probe")


def jpeg75(x: np.ndarray) -> np.ndarray:
    from cifake.corruptions import jpeg

    return jpeg(x, 75)


def cifake(args) -> dict[str, np.ndarray]:
    with np.load(args.root / "cifake.npz") as z:
        return {k: z[k] for k in z.files}


def save_float32(build, trained, path: Path) -> None:
    """Save at ``path``, written whole (:func:`save_whole`), a float32 copy of ``trained`` made by ``build()`` (it
    was trained under a mixed-precision policy, which this ends)."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    plain = build()
    plain.set_weights([np.asarray(w, np.float32) for w in trained.get_weights()])
    save_whole(plain, path)


def save_whole(model, path: Path) -> None:
    """Save ``model`` at ``path`` through a partial file renamed when done: a killed save leaves no file a rerun
    would take as done."""
    partial_path = path.with_suffix(".partial.keras")
    model.save(partial_path)
    partial_path.rename(path)


def trained_minutes(folder: Path) -> float:
    """The training minutes a step kept in ``folder`` (:func:`epoch_log`), 0 where it kept none."""
    kept = folder / "minutes.txt"
    return float(kept.read_text()) if kept.exists() else 0.0


def epoch_log(folder: Path | None = None):
    """Logs each epoch's metrics and seconds; with ``folder``, keeps there the training minutes so far (added to
    across a resumed run; read back by :func:`trained_minutes`)."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.time()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.time() - self.start
            log.info("epoch %d: %s (%.0f s)", epoch + 1, logs, seconds)
            if folder is not None:
                (folder / "minutes.txt").write_text(f"{trained_minutes(folder) + seconds / 60:.2f}\n")

    return EpochLog()


def append_record(record: dict) -> None:
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    log.info("%s", json.dumps(record["summary"]))


def recorded() -> set[str]:
    """Names of the runs already in the results file."""
    return {json.loads(line)["name"] for line in RESULTS.read_text().splitlines()} if RESULTS.exists() else set()


def score_kinds(args, data, prefix: str, scores: dict, describe, skip, minutes: float = 0.0) -> None:
    """Record each score of ``scores`` not yet in the results file as run ``prefix:kind``: its threshold calls
    95 % of test REAL 2000-3999 Real; ``describe(kind)`` gives the record's fields and ``skip(kind)`` the own
    generators it saw (not scored as held out)."""
    for kind, score in scores.items():
        args.name = f"{prefix}:{kind}"
        if args.name in recorded():
            continue
        threshold = float(np.quantile(score(data["test_REAL"][2000:4000]), 0.95))
        scores_ = scored(args, data, score, skip=skip(kind), minutes=minutes, threshold=threshold)
        append_record({"name": args.name} | describe(kind) | scores_)


def scored(args, data, predict, skip=(), minutes=0.0, threshold=0.5) -> dict:
    """``predict`` (images -> P(Fake) or any score) on the validation set, the own generators not in ``skip``,
    and CIFAKE test REAL/FAKE, with a summary line; ``threshold`` is where it calls Fake."""
    from cifake.generalisation import generator_scores, score_generator_set, set_scores

    p_real = predict(data["test_REAL"][:2000])
    record = {"train_minutes": minutes, "threshold": threshold}
    record["validation"] = score_generator_set(predict, args.validation, p_real, threshold)
    held_out = {k: v for k, v in own_generators(args).items() if k not in skip}
    rows = {k: generator_scores(predict(v[:1000]), p_real, threshold) for k, v in held_out.items()}
    record["own_held_out"] = {"per_generator": rows, "mean": set_scores(rows) if rows else None}
    record["sd_test_caught"] = float(np.mean(predict(data["test_FAKE"][:2000]) >= threshold))
    record["real_called_real"] = float(np.mean(p_real < threshold))
    v = record["validation"]["mean"]
    record["summary"] = {
        "name": args.name, "val_mean_caught": round(v["mean_caught"], 4), "val_min_caught": round(v["min_caught"], 4),
        "val_mean_auc": round(v["mean_roc_auc"], 4), "real_called_real": record["real_called_real"],
        "sd_caught": record["sd_test_caught"], "held_out": {k: round(r["caught"], 3) for k, r in rows.items()},
        "minutes": round(minutes, 1),
    }  # fmt: skip
    return record


def fake_sources(args, spec: str) -> dict[str, np.ndarray]:
    """``sd=12000,diff-nearest/resynth=6000`` -> name: images (the first N of each source)."""
    data = cifake(args)
    out = {}
    for part in spec.split(","):
        name, count = part.split("=")
        x = data["train_FAKE"] if name == "sd" else np.load(args.root / f"{name}.npy")
        out[name] = x[: int(count)]
    return out


def own_generators(args) -> dict[str, np.ndarray]:
    return {str(p.relative_to(args.root).with_suffix("")): np.load(p) for p in sorted(args.root.glob("*/*.npy"))}


def remembered(per_images):
    """``per_images`` (images -> array) computed once per distinct image set: several scores of one step read
    the same columns."""
    memo: dict[bytes, np.ndarray] = {}

    def of(images: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(np.ascontiguousarray(images).data).digest() + repr(images.shape).encode()
        if key not in memo:
            memo[key] = per_images(images)
        return memo[key]

    return of


def batched(model, images: np.ndarray, size: int = 500) -> list[np.ndarray]:
    """``model``'s outputs on ``images``, run in slices of ``size`` and joined: one array per output."""
    parts = [model(images[i : i + size], training=False) for i in range(0, len(images), size)]
    parts = [part if isinstance(part, list | tuple) else [part] for part in parts]
    return [np.concatenate([np.asarray(part[k]) for part in parts]) for k in range(len(parts[0]))]


def nearest_distances(queries: np.ndarray, bank: np.ndarray, k: int = 1, chunk: int = 1024) -> np.ndarray:
    """Each query's Euclidean distance to its ``k``-th nearest row of ``bank``, by |q|^2 - 2 q.b + |b|^2 in chunks
    of ``chunk`` queries (a chunk against 100 000 rows is 400 MB in float32)."""
    queries, bank = queries.astype(np.float32, copy=False), bank.astype(np.float32, copy=False)
    bank_norms = np.einsum("ij,ij->i", bank, bank)
    out = np.empty(len(queries), np.float32)
    for i in range(0, len(queries), chunk):
        q = queries[i : i + chunk]
        squared = q @ bank.T
        squared *= -2
        squared += bank_norms
        out[i : i + chunk] = np.partition(squared, k - 1, axis=1)[:, k - 1] + np.einsum("ij,ij->i", q, q)
    return np.sqrt(np.maximum(out, 0))


def softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def joined(scores, real: np.ndarray, shares=None):
    """``scores`` joined by the smallest of their p-values under ``real`` photographs (the share of them that score
    at least as high): an image is as suspect as its strangest score. With ``shares`` (summing to 1) each p-value is
    divided by its share first, so a score's share of the false alarms is about its share (weighted Bonferroni)."""
    weights = np.full(len(scores), 1 / len(scores)) if shares is None else np.asarray(shares, np.float64)

    @cache
    def references():  # on first use: a rerun whose kinds are all recorded scores nothing
        return [np.sort(s(real)) for s in scores]

    def score(images):
        tails = [1 - np.searchsorted(r, s(images)) / len(r) for r, s in zip(references(), scores, strict=True)]
        return -np.min(np.divide(tails, weights[:, None]), axis=0)

    return score


def shipped_score(images: np.ndarray) -> np.ndarray:
    """The shipped robust detector's P(Fake), once per image set (loaded on first use)."""
    return _shipped()(images)


@cache
def _shipped():
    import keras

    from cifake.model import predict_proba

    model = keras.saving.load_model(ROOT / "models" / "pretrained" / "cifake-robust.keras", safe_mode=True)
    return remembered(lambda images: predict_proba(model, images).reshape(-1))
