"""Score saved models on generators they never trained on; write ``generalisation.json`` beside them.

    python benchmarks/generalisation.py --real /path/to/cifake/test/REAL models/pretrained/*.keras

For each model file: every generator set of ``evaluate.generator_sets`` in params.yaml (a set whose folder is
absent is skipped) scored as ``evaluate`` scores it (cifake.generalisation: each generator's share called Fake
with a 95 % interval, ROC AUC against the real photographs), and the share of the real photographs called Real.
The file is keyed by model file name and records its sha256, so that ``cifake predict`` and the demo quote the
figures of exactly that file (cifake.generalisation.ood_note).
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any

from cifake.config import load_params
from cifake.fileio import read_json, sha256_file, write_json
from cifake.generalisation import FIGURES_FILE, load_folder, score_sets
from cifake.model import load_model, predict_proba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--real", type=Path, required=True, help="a folder of real photographs (CIFAKE test/REAL)")
    args = parser.parse_args()
    sets = load_params().evaluate.generator_sets
    real, failed = load_folder(args.real)
    print(f"{len(real)} real photographs ({len(failed)} unreadable) from {args.real}")
    for path in args.models:
        start = time.time()
        model = load_model(path)
        p_real = predict_proba(model, real)
        scored = score_sets(sets, {"model": (partial(predict_proba, model), p_real)})
        entry: dict[str, Any] = {
            "sha256": sha256_file(path),
            "real_images": len(real),
            "real_called_real": float((p_real < 0.5).mean()),
            "sets": {name: s["model"] for name, s in scored.items() if "model" in s},
            "skipped_sets": {name: s["path"] for name, s in scored.items() if "model" not in s},
        }
        table = path.parent / FIGURES_FILE
        write_json(table, {**(read_json(table) if table.is_file() else {}), path.name: entry})
        means = {name: round(s["mean"]["mean_caught"], 4) for name, s in entry["sets"].items()}
        seconds = time.time() - start
        print(f"{path.name}: real called Real {entry['real_called_real']:.4f}; mean caught {means} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
