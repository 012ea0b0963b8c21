"""Reference tooling: torchvision twins of our models, and what makes the two comparable.

Test and reference tooling, apart from the library: the reference tests, the benchmarks, the
chapters' torchvision checks and ``mrcnn-np verify`` use it. The library never imports it at run
time; only :mod:`mrcnn_np.verify`, the ``verify`` command's comparison, does. Everything that
touches torch needs the ``reference`` extra (``pip install 'mrcnn-np[reference]'``) and imports
torch only when called.

- :mod:`.twins`: torchvision's ``MaskRCNN`` of exactly our architecture, both models with the
  same weights, our images and targets as torch tensors;
- :mod:`.training`: torch.optim's twins of our optimizer and training step;
- :mod:`.sampling`: torchvision's samplers replaying the anchors and RoIs one of our training
  calls drew, and float64 RPN labels.

:func:`require_torch` is the check behind all of them; :func:`import_torch` is the chapters'
"is torch installed?" cell.
"""

from __future__ import annotations

from types import ModuleType

NOTEBOOK_HINT = ("torchvision is not installed; to run this check, install the reference extra: "
                 "pip install -e '.[reference]'")


def require_torch(who: str = "this") -> ModuleType:
    """``torch``, once torch and torchvision both import; otherwise ImportError saying that ``who``
    compares with torchvision and what to install."""
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{who} compares with torchvision, which is not installed; install the "
                          "reference extra:  pip install 'mrcnn-np[reference]'") from e
    return torch


def import_torch() -> ModuleType | None:
    """The chapters' check: ``torch`` when torch and torchvision import, else None after printing how
    to install them. A chapter runs its torchvision cells only ``if torch is not None``."""
    try:
        return require_torch()
    except ImportError:
        print(NOTEBOOK_HINT)
        return None
