"""trl's fused LM head on a CPU, projecting only the positions its loss scores.

trl 1.16 trains through ``add_fused_lm_head``: the backbone's hidden states go through the unembedding in tiles and
only the log-probability of each next-token label comes back. On CUDA and XPU it first keeps the positions whose
label is not -100 (a reply's tokens); elsewhere it projects every position, prompt and padding included, and masks
them afterwards, so that a compiling backend (Neuron) sees one tile shape. A CPU compiles nothing, and for a real
pair the reply is about a third of a padded batch while the unembedding is most of the step's work (Gemma 3: 262,144
rows): :func:`reply_positions_only` has trl keep the scored positions on every device. The loss and its gradients
are the same numbers (a masked position contributes exactly zero either way; ``tests/test_realpairs.py`` checks
them against trl's own path), computed in another order of float additions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def reply_positions_only(enabled: bool = True) -> Iterator[None]:
    """Within the block, trl's fused LM head projects only the positions its loss scores, on any device."""
    import trl.trainer.utils as trl_utils

    if not enabled:
        yield
        return
    if not callable(getattr(trl_utils, "_use_triton", None)):
        raise RuntimeError("trl.trainer.utils._use_triton is gone: this trl is not the 1.16 the project locks; "
                       "train without reply_positions_only or update interp.realpairs.scoring")
    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: True  # read only where the fused head decides whether to compact
    try:
        yield
    finally:
        trl_utils._use_triton = original
