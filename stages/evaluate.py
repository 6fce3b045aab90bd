"""DVC stage `evaluate`: both models clean, under FGSM/PGD at every epsilon and under everyday changes.

Also scores the robust model under transfer attacks (PGD crafted on the clean model and on each of
`evaluate.transfer_sources`), on data/test_dataset_2, and gives the competition score
(40 % clean + 60 % Test_dataset_2 accuracy). Writes metrics/evaluate.json and the plot data.
"""

import shutil
from functools import partial
from pathlib import Path

import numpy as np

from cifake import tracking
from cifake.config import load_params
from cifake.dataset import Split, describe_dataset, load_test_folder
from cifake.determinism import set_determinism
from cifake.errors import run_stage
from cifake.evaluation import competition_score, pgd_images, sample_sized, score_model, transfer_scores
from cifake.fileio import read_json, sha256_file, write_json, write_rows
from cifake.generalisation import headline as generalisation_headline
from cifake.generalisation import plot_rows, score_sets
from cifake.metrics import classification_metrics, pr_points, roc_points, stratified_subset
from cifake.model import load_model, predict_proba
from cifake.outbox import send_waiting
from cifake.report import (
    adversarial_grid,
    confusion_rows,
    corruption_rows,
    evaluation_summary,
    headline,
    robustness_rows,
)

PROCESSED = Path("data/processed")
TEST2 = Path("data/test_dataset_2")
MODELS = {"clean": Path("models/model.keras"), "robust": Path("models/model_robust.keras")}
PLOTS = Path("metrics/plots")
OUT = Path("metrics/evaluate.json")
SUMMARY = Path("metrics/summary.json")
CACHE = Path("checkpoints/evaluate")  # finished attack batches: a killed run resumes (cifake.attack_cache)
OUTBOX = Path("checkpoints/mlflow-outbox")  # what the training stages could not send to MLflow (see runs.py)


def evaluate(params, test: Split, subset: np.ndarray) -> tuple[dict, tuple]:
    """Score both models; write their ROC/PR rows; return per model (scores, model, P(Fake), PGD images by
    epsilon) and the picture's rows."""
    ev = params.evaluate
    shown = np.concatenate([np.flatnonzero(test.y[subset] == c)[:4] for c in (0, 1)])
    picture_eps = min(ev.epsilons, key=lambda e: abs(e - params.perturb.epsilon))
    results, grid = {}, []
    for name, path in MODELS.items():
        model = load_model(path)
        keep: dict[float, np.ndarray] = {}  # PGD images by epsilon, filled by score_model
        scores, p_clean = score_model(model, test, subset, ev, params.seed, keep=keep, cache=CACHE)
        write_rows(PLOTS / f"roc_{name}_model.csv", roc_points(test.y, p_clean))
        write_rows(PLOTS / f"pr_{name}_model.csv", pr_points(test.y, p_clean))
        x_show = keep[picture_eps][shown]
        grid.append(
            (
                f"{name}, PGD {picture_eps * 255:.0f}/255",
                test.x[subset][shown],
                x_show,
                p_clean[subset][shown],
                predict_proba(model, x_show),
            )
        )
        results[name] = (scores, model, p_clean, keep)
    return results, (grid, test.y[subset][shown])


def transfer(params, robust, clean_pgd: dict, test: Split, subset: np.ndarray) -> dict:
    """The robust model under PGD crafted on other models: the clean one, then each transfer source."""
    ev = params.evaluate
    x, y = test.x[subset], test.y[subset]
    crafted = {"clean": clean_pgd}
    for name, path in ev.transfer_sources.items():
        crafted[name] = pgd_images(
            load_model(path),
            x,
            y,
            ev.epsilons,
            pgd_steps=ev.pgd_steps,
            step_fraction=ev.pgd_step_fraction,
            batch_size=ev.batch_size,
            cache=CACHE,
        )
    return {name: transfer_scores(robust, images, y, ev.batch_size) for name, images in crafted.items()}


def generalisation(params, results, test: Split) -> dict:
    """Both models on every configured generator set: each generator's share called Fake, ROC AUC against
    the test set's real photographs."""
    real = test.y == 0
    models = {
        f"{name}_model": (partial(predict_proba, model, batch_size=params.evaluate.batch_size), p_clean[real])
        for name, (_, model, p_clean, _) in results.items()
    }
    scored = score_sets(params.evaluate.generator_sets, models)
    trained = sorted(set(params.train.fakes) | set(params.fgsm_finetune.fakes))
    return {"sets": scored, "trained_on_own_fakes": trained}


def main() -> None:
    params = load_params()
    ev, sized = sample_sized(params.evaluate) if params.data.source == "sample" else (params.evaluate, None)
    params = params.model_copy(update={"evaluate": ev})
    set_determinism(params.seed)
    meta = read_json(PROCESSED / "meta.json")
    stage_params = {"seed": params.seed, "evaluate": ev.model_dump()}
    with tracking.stage_run("evaluate", params.tracking.experiment, stage_params, meta):
        test = Split.load(PROCESSED / "test.npz")
        subset = stratified_subset(test.y, ev.attack_subset, params.seed)
        results, (grid, shown_y) = evaluate(params, test, subset)
        results["robust"][0]["transfer"] = transfer(params, results["robust"][1], results["clean"][3], test, subset)
        test2 = load_test_folder(TEST2)
        p2 = predict_proba(results["robust"][1], test2.x.astype(np.float32), ev.batch_size)
        p = params.perturb
        test2_scores = {
            "attack": f"pgd-{p.pgd_steps} eps={p.epsilon:.6f} ({p.epsilon * 255:.2f}/255)",
            **classification_metrics(test2.y, p2),
        }
        out = {
            "dataset": describe_dataset(meta["dataset"]),
            "test_images": int(len(test.y)),
            "attack_images": int(len(subset)),
            **({"sample_sized_note": sized} if sized else {}),
            "pgd_steps": ev.pgd_steps,
            **{f"{name}_model": scores for name, (scores, *_) in results.items()},
            "test_dataset_2": test2_scores,
            "competition_score": competition_score(results["robust"][0]["clean"]["accuracy"], test2_scores["accuracy"]),
            "generalisation": generalisation(params, results, test),
        }
        write_plots(out, results, test, test2, p2, grid, shown_y, ev.epsilons)
        write_json(OUT, out)
        others = generalisation_headline(out["generalisation"]["sets"], "robust_model")
        write_json(SUMMARY, {**headline(out), "generalisation": others})
        shutil.rmtree(CACHE, ignore_errors=True)
        tracking.log_metrics({k: v for k, v in out.items() if isinstance(v, (dict, float))})
        tracking.log_artifacts(OUT, PLOTS)
        describe_versions(params, out)
    for name in MODELS:
        clean = out[f"{name}_model"]["clean"]
        print(f"evaluate: {name} model: clean accuracy {clean['accuracy']:.4f}, F1 {clean['f1']:.4f}")
    print(
        f"evaluate: test_dataset_2 accuracy {test2_scores['accuracy']:.4f}; "
        f"competition score {out['competition_score']:.4f}"
    )


def write_plots(out, results, test, test2, p2, grid, shown_y, epsilons) -> None:
    scores = {name: out[f"{name}_model"] for name in MODELS}
    write_rows(PLOTS / "robustness.csv", robustness_rows(scores, epsilons))
    for name in MODELS:
        write_rows(PLOTS / f"corruptions_{name}_model.csv", corruption_rows(scores[name]))
    write_rows(PLOTS / "confusion_clean.csv", confusion_rows(test.y, results["robust"][2]))
    write_rows(PLOTS / "confusion_test2.csv", confusion_rows(test2.y, p2))
    write_rows(PLOTS / "generalisation.csv", plot_rows(out["generalisation"]["sets"], "robust_model"))
    adversarial_grid(grid, shown_y, PLOTS / "adversarial_examples.png")


def describe_versions(params, out) -> None:
    """Add the test figures to the descriptions of the two registered versions.

    First sends what a training stage left in the outbox (its server was down), so that its version exists.
    """
    _, left = send_waiting(OUTBOX)
    for outbox in left:
        print(f"evaluate: still not sent to MLflow ({outbox.problem}): {outbox.waiting()}; run `cifake sync-tracking`")
    summaries = {
        sha256_file(path): evaluation_summary(
            out[f"{name}_model"],
            out["attack_images"],
            out["pgd_steps"],
            out["test_dataset_2"] if name == "robust" else None,
        )
        for name, path in MODELS.items()
    }
    versions = tracking.describe_versions(params.tracking.registered_model, summaries)
    print(f"evaluate: test figures added to {params.tracking.registered_model} versions {versions}")


if __name__ == "__main__":
    run_stage(main)
