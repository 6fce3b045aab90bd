"""DVC stage `fakes`: training fakes the project makes itself -> data/fakes/{train,heldout}/<generator>_<kind>/.

For each of `fakes.generators` it trains a tiny diffusion model on the training split's real images, then writes
JPEG quality 75 fakes (CIFAKE's encoding): `sample` from pure noise, and `resynth`, real images noised part-way
and denoised again; the `train` set from training images, the `heldout` set (for `evaluate`) from validation
images with other seeds. One MLflow run logs each generator's loss per epoch and a grid of its fakes.
A killed run resumes: a generator's training after its last finished epoch, finished folders are kept.
"""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cifake import tracking
from cifake.config import load_params
from cifake.dataset import Split
from cifake.determinism import set_determinism
from cifake.errors import run_stage
from cifake.fakes import grid, write_fakes
from cifake.fileio import read_json, replace_dir
from cifake.generalisation import load_folder
from cifake.generators import DenoiserShape, load_denoiser, make_fakes, train_denoiser
from cifake.inference import choose_precision
from cifake.model import save_model
from cifake.runs import fingerprint

PROCESSED = Path("data/processed")
OUT = Path("data/fakes")
WORK = Path("checkpoints/fakes")  # a killed run's trained generators and finished folders, until the stage ends


def denoiser_for(name: str, shape: DenoiserShape, fk, epochs: int, real: np.ndarray, seed: int, work: Path):
    """The generator ``name``'s trained denoiser: from ``work`` when a killed run finished it, else trained."""
    saved = work / "generators" / f"{name}.keras"
    if saved.exists():
        return load_denoiser(saved)
    saved.parent.mkdir(parents=True, exist_ok=True)
    denoiser = train_denoiser(
        real,
        shape,
        epochs=epochs,
        batch_size=fk.batch_size,
        learning_rate=fk.learning_rate,
        precision=choose_precision(fk.precision)[0],
        seed=seed,
        backup_dir=work / "backup" / name,
        on_epoch=lambda row: tracking.log_epoch({"epoch": row["epoch"], f"{name}.noise_loss": row["noise_loss"]}),
    )
    save_model(denoiser, saved)
    return denoiser


def main() -> None:
    params = load_params()
    fk, seed = params.fakes, params.seed
    on_sample = params.data.source == "sample"
    epochs = fk.sample_epochs if on_sample else fk.epochs
    counts = {"train": fk.sample_images if on_sample else fk.images}
    counts["heldout"] = fk.sample_images if on_sample else fk.heldout_images
    set_determinism(seed)
    meta = read_json(PROCESSED / "meta.json")
    train, val = Split.load(PROCESSED / "train.npz"), Split.load(PROCESSED / "val.npz")
    reals = {"train": train.x[train.y == 0], "heldout": val.x[val.y == 0]}
    stage_params = {"seed": seed, "on_sample": on_sample, "fakes": fk.model_dump()}
    work = WORK / fingerprint(stage_params, meta["dataset_sha256"])[:16]  # other settings: another folder
    with tracking.stage_run("fakes", params.tracking.experiment, stage_params, meta):
        for g, (name, upsample) in enumerate(fk.generators.items()):
            shape = DenoiserShape(fk.widths, 1, upsample)
            denoiser = denoiser_for(name, shape, fk, epochs, reals["train"], seed + g, work)
            for s, (which, count) in enumerate(counts.items()):
                for k, kind in enumerate(fk.kinds):
                    folder = work / "out" / which / f"{name}_{kind}"
                    if not folder.exists():
                        made = make_fakes(
                            denoiser, kind, reals[which], count, fk.steps, fk.strengths, seed + g + 7 * s + 31 * k
                        )
                        write_fakes(made, folder)
                        print(f"fakes: {count} {which} fakes of {name}_{kind} -> {folder.name}")
            write_grids(work / "out" / "grids", work / "out" / "train", name, fk.kinds)
        tracking.log_artifacts(work / "out" / "grids")
        replace_dir(work / "out", OUT)
    shutil.rmtree(WORK)  # every output is in place: the work folder has served


def write_grids(grids: Path, train: Path, name: str, kinds) -> None:
    """A PNG grid of each of the generator's kinds of training fakes, as written (JPEG q75)."""
    grids.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        images, _ = load_folder(train / f"{name}_{kind}")
        Image.fromarray(grid(images)).save(grids / f"{name}_{kind}.png")


if __name__ == "__main__":
    run_stage(main)
