"""interp: how does an aligned checkpoint differ inside from its base, and which differences
cause the behaviour change?

>>> import interp
>>> pair = interp.load_pair(base_dir, aligned_dir)  # hub names, local directories or .gguf files
>>> pair.cfg.n_layers, sorted(dict(pair))
(2, ['aligned', 'base'])

The embedded organisms: ``interp.organisms.load_pair("dpo")`` (built offline on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from interp import organisms
    from interp.cache import Activations, collect_activations, collect_pair_activations
    from interp.data import PromptSet
    from interp.models import (
        CheckpointNotFoundError,
        IdenticalCheckpointsError,
        IncompatiblePairError,
        ModelPair,
        NonFiniteWeightsError,
        load_model,
        load_pair,
    )

_EXPORTS = {
    "Activations": "interp.cache", "collect_activations": "interp.cache", "collect_pair_activations": "interp.cache",
    "PromptSet": "interp.data", "CheckpointNotFoundError": "interp.models", "IncompatiblePairError": "interp.models",
    "IdenticalCheckpointsError": "interp.models", "ModelPair": "interp.models", "load_model": "interp.models",
    "NonFiniteWeightsError": "interp.models",
    "load_pair": "interp.models", "organisms": None,
}
"""Each top-level name and the module it comes from (``None``: a subpackage), imported on first use, so that
``import interp`` (and ``interp --help``) does not pay for torch, transformers and TransformerLens."""
__all__ = [
    "Activations", "CheckpointNotFoundError", "IdenticalCheckpointsError", "IncompatiblePairError", "ModelPair",
    "NonFiniteWeightsError", "PromptSet", "collect_activations", "collect_pair_activations", "load_model", "load_pair",
    "organisms",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'interp' has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:
        value = importlib.import_module(f"interp.{name}")
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
