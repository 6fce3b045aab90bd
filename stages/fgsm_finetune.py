"""DVC stage `fgsm_finetune`: random-start FGSM fine-tuning -> models/model_robust.keras."""

from cifake.cli import run_stage
from cifake.config import TrainParams, load_params
from cifake.training import Adversarial, FitConfig
from cifake.pipeline import train_and_record


def main() -> None:
    params = load_params()
    ft = params.fgsm_finetune
    adversarial = Adversarial(
        epsilon=ft.epsilon, step=ft.step, random_start=ft.random_start, clean_fraction=ft.clean_fraction
    )
    config = FitConfig(
        **ft.model_dump(include=set(TrainParams.model_fields)), seed=params.seed, adversarial=adversarial
    )
    train_and_record(
        params,
        stage="fgsm_finetune",
        config=config,
        stage_params={"seed": params.seed, "fgsm_finetune": ft.model_dump()},
        init_model="models/model.keras",
        out_model="models/model_robust.keras",
        out_metrics="metrics/finetune.json",
        out_history="metrics/plots/finetune_history.csv",
        alias="champion",
    )


if __name__ == "__main__":
    run_stage(main)
