"""DVC stage `perturb`: build data/test_dataset_2, every test image under white-box PGD against the robust model.

Saved losslessly as PNG under the clean test set's neutral names, with labels beside it.
"""

import shutil
from pathlib import Path

from cifake.config import load_params
from cifake.dataset import Split, write_test_folder
from cifake.determinism import set_determinism
from cifake.errors import run_stage
from cifake.evaluation import perturb
from cifake.model import load_model
from cifake.report import png_bytes

TEST = Path("data/processed/test.npz")
MODEL = Path("models/model_robust.keras")
OUT = Path("data/test_dataset_2")
CACHE = Path("checkpoints/perturb")  # finished attack batches: a killed run resumes (cifake.attack_cache)


def main() -> None:
    params = load_params()
    p = params.perturb
    set_determinism(params.seed)
    test = Split.load(TEST)
    x2 = perturb(
        load_model(MODEL),
        test.x,
        test.y,
        eps=p.epsilon,
        steps=p.pgd_steps,
        step_fraction=p.pgd_step_fraction,
        batch_size=p.batch_size,
        cache=CACHE,
    )
    names = [str(Path(n).with_suffix(".png")) for n in test.names]
    write_test_folder(OUT, names, [png_bytes(img) for img in x2], test.y)
    shutil.rmtree(CACHE, ignore_errors=True)
    print(f"perturb: {len(names)} images under PGD-{p.pgd_steps} eps={p.epsilon * 255:.2f}/255 -> {OUT}")


if __name__ == "__main__":
    run_stage(main)
