"""DVC stage `evaluate`: both models, clean and under FGSM/PGD; builds data/test_dataset_2."""

from cifake import tracking
from cifake.cli import run_stage
from cifake.config import load_params
from cifake.fileio import sha256_file, write_json
from cifake.pipeline import dataset_info, evaluate_models, evaluation_summary

PLOTS = "metrics/plots"
OUT = "metrics/evaluate.json"
MODELS = {"clean": "models/model.keras", "robust": "models/model_robust.keras"}


def main() -> None:
    params = load_params()
    stage_params = {"seed": params.seed, "evaluate": params.evaluate.model_dump()}
    with tracking.stage_run("evaluate", params.tracking.experiment, stage_params, dataset_info()):
        results = evaluate_models(
            params,
            MODELS,
            test2_dir="data/test_dataset_2",
            plots_dir=PLOTS,
        )
        write_json(OUT, results)
        tracking.log_metrics({k: v for k, v in results.items() if isinstance(v, dict)})
        tracking.log_artifacts(OUT, PLOTS)
        summaries = {
            sha256_file(path): evaluation_summary(
                results[f"{name}_model"], results["attack_images"], results["pgd_steps"],
                results["test_dataset_2"] if name == "robust" else None,
            )
            for name, path in MODELS.items()
        }
        versions = tracking.describe_versions(params.tracking.registered_model, summaries)
        print(f"evaluate: test figures added to {params.tracking.registered_model} versions {versions}")
    for name in ("clean_model", "robust_model"):
        clean = results[name]["clean"]
        print(f"evaluate: {name}: clean accuracy {clean['accuracy']:.4f}, F1 {clean['f1']:.4f}")
    print(f"evaluate: test_dataset_2 accuracy {results['test_dataset_2']['accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)
