"""cifake: tell real photographs from AI-generated images, and stay right under attack."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType

# TensorFlow's C++ INFO and WARNING lines (CPU feature hints, ...) would fill every stage's output; errors still
# show. Set before any module of the package imports TensorFlow; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


@contextmanager
def _stderr_held() -> Iterator[None]:
    """Point file descriptor 2 at a temporary file while the block runs, and back at once after it.

    Catches what C++ code writes straight to the descriptor. If the block raises, what it wrote is passed on.
    """
    import tempfile

    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2: nothing to quiet
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                os.write(2, held.read())


class _QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads ``tensorflow``, once, with descriptor 2 held.

    TensorFlow's C++ logging prints ``WARNING: All log messages before absl::InitializeLog() ...`` and oneDNN's
    ``I0000 ... oneDNN custom operations are on`` while it loads, before it reads TF_CPP_MIN_LOG_LEVEL. Installed
    by this package's ``__init__``, so every ``import cifake.x`` (CLI, stages, the demo's server, workers) goes
    through it before anything imports TensorFlow or Keras. oneDNN stays on; errors raised later print as usual.
    TF_CPP_MIN_LOG_LEVEL=0 (all C++ logging wanted) loads it as is.
    """

    def __init__(self) -> None:
        self.loader: importlib.abc.Loader | None = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # from here on the import system is as it was
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
            return spec
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        assert self.loader is not None
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        assert self.loader is not None and module.__spec__ is not None
        module.__loader__ = module.__spec__.loader = self.loader  # the real loader, for anyone who asks later
        with _stderr_held():
            self.loader.exec_module(module)


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlow())
