"""DVC stage `check_params`: validate all of params.yaml before any other stage runs.

Every other stage depends on its output, so DVC runs it first. A typo stops `dvc repro`
here, before DVC deletes the outputs of the stage whose params changed. The output's
content never depends on the params, so a valid change reruns only the stages it concerns.
"""

from pathlib import Path

from cifake.config import load_params
from cifake.errors import run_stage
from cifake.fileio import write_text

OUT = Path("data/params_checked")


def main() -> None:
    load_params()
    write_text(OUT, "params.yaml is valid (the check_params stage wrote this; its content never changes)\n")
    print("check_params: params.yaml is valid")


if __name__ == "__main__":
    run_stage(main)
