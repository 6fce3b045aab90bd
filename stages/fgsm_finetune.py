"""DVC stage `fgsm_finetune`: random-start FGSM adversarial training -> models/model_robust.keras.

Starts from the clean model of `train` (its single-view network if `train` saved it flip-averaged, and
then saves the robust one flip-averaged too); resumes a killed run. With `fgsm_finetune.distill_weight`
above 0, the loss targets mix in the soft targets of `fgsm_finetune.teacher` (a saved model).
"""

from pathlib import Path

from cifake.config import load_params
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.distill import teacher_targets
from cifake.distribute import distribution_strategy
from cifake.errors import run_stage
from cifake.fakes import with_own_fakes
from cifake.fileio import read_json, sha256_file
from cifake.fitconfig import adversarial_config, fit_config
from cifake.model import load_model, without_flip_average
from cifake.runs import RunFiles, fingerprint, train_and_register

PROCESSED = Path("data/processed")
OWN_FAKES = Path("data/fakes/train")  # the fakes stage's, drawn in by `fgsm_finetune.fakes`
CLEAN_MODEL = Path("models/model.keras")
FILES = RunFiles(
    model=Path("models/model_robust.keras"),
    metrics=Path("metrics/finetune.json"),
    history=Path("metrics/plots/finetune_history.csv"),
    checkpoints=Path("checkpoints/fgsm_finetune"),
    outbox=Path("checkpoints/mlflow-outbox"),  # MLflow records a stopped server missed: `cifake sync-tracking`
)


def main() -> None:
    params = load_params()
    set_determinism(params.seed)
    meta = read_json(PROCESSED / "meta.json")
    ft = params.fgsm_finetune
    config = fit_config(ft, params.seed, adversarial=adversarial_config(ft), view_shift=params.model.view_shift)
    stage_params = {"seed": params.seed, "view_shift": params.model.view_shift, "fgsm_finetune": ft.model_dump()}
    strategy = distribution_strategy(config.strategy)
    with strategy.scope():
        model, flip_average = without_flip_average(load_model(CLEAN_MODEL))
    train, fakes_sha = with_own_fakes(Split.load(PROCESSED / "train.npz"), OWN_FAKES, ft.fakes, params.seed)
    soft_targets, teacher_sha = None, ""
    if ft.distill_weight > 0:
        soft_targets = teacher_targets(load_model(ft.teacher), train.x, ft.distill_temperature)
        teacher_sha = sha256_file(Path(ft.teacher))
    train_and_register(
        model,
        train,
        Split.load(PROCESSED / "val.npz"),
        config,
        stage="fgsm_finetune",
        stage_params=stage_params,
        meta=meta,
        files=FILES,
        experiment=params.tracking.experiment,
        registered_model=params.tracking.registered_model,
        alias="champion",
        strategy=strategy,
        key=fingerprint(stage_params, meta["dataset_sha256"], sha256_file(CLEAN_MODEL), teacher_sha, fakes_sha),
        flip_average=flip_average,
        soft_targets=soft_targets,
    )


if __name__ == "__main__":
    run_stage(main)
