"""interp: how does an aligned checkpoint differ inside from its base, and which differences
cause the behaviour change?

>>> import interp
>>> pair = interp.load_pair(base_dir, aligned_dir)  # hub names, local directories or .gguf files
>>> pair.cfg.n_layers, sorted(dict(pair))
(2, ['aligned', 'base'])

The embedded organisms: ``interp.organisms.load_pair("dpo")`` (built offline on first use).
"""

from interp import organisms
from interp.cache import Activations, collect_activations, collect_pair_activations
from interp.data import PromptSet
from interp.models import CheckpointNotFoundError, IncompatiblePairError, ModelPair, load_pair

__all__ = [
    "Activations", "CheckpointNotFoundError", "IncompatiblePairError", "ModelPair", "PromptSet", "collect_activations",
    "collect_pair_activations", "load_pair", "organisms",
]
__version__ = "0.1.0"
