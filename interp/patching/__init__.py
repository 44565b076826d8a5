"""Activation patching, fast: batched exact patching (drop-in for ``transformer_lens.patching``),
patching across the two models of a pair, and attribution patching.

* :mod:`~interp.patching.exact` - ``get_act_patch_*``: same arguments, layouts and numbers as
  ``transformer_lens.patching``, many cells per forward pass (:mod:`~interp.patching.engine`);
  :func:`get_act_patch` picks one by name;
* :mod:`~interp.patching.across` - :func:`patch_across` (source model's activations into the
  target), :func:`prompt_tokens`, :func:`common_length_tokens`, :func:`equal_length_pairs`,
  :func:`length_matched_pairs` (real prompts, paired by length), :func:`refusal_metric`,
  :func:`position_labels` (a heatmap's token axis);
* :mod:`~interp.patching.attribution` - :func:`attribute`: every sweep's first-order estimate
  from one forward and one backward pass.
"""

from interp.patching.across import (
    common_length_tokens,
    equal_length_pairs,
    length_matched_pairs,
    patch_across,
    position_labels,
    prompt_tokens,
    refusal_metric,
)
from interp.patching.attribution import Attribution, attribute
from interp.patching.exact import (
    SITES,
    get_act_patch,
    get_act_patch_attn_head_all_pos_every,
    get_act_patch_attn_head_by_pos_every,
    get_act_patch_attn_head_k_all_pos,
    get_act_patch_attn_head_k_by_pos,
    get_act_patch_attn_head_out_all_pos,
    get_act_patch_attn_head_out_by_pos,
    get_act_patch_attn_head_pattern_all_pos,
    get_act_patch_attn_head_pattern_by_pos,
    get_act_patch_attn_head_pattern_dest_src_pos,
    get_act_patch_attn_head_q_all_pos,
    get_act_patch_attn_head_q_by_pos,
    get_act_patch_attn_head_v_all_pos,
    get_act_patch_attn_head_v_by_pos,
    get_act_patch_attn_out,
    get_act_patch_block_every,
    get_act_patch_mlp_out,
    get_act_patch_resid_mid,
    get_act_patch_resid_pre,
)

__all__ = [
    "SITES", "Attribution", "attribute", "common_length_tokens", "equal_length_pairs", "get_act_patch",
    "length_matched_pairs", "patch_across", "position_labels", "prompt_tokens", "refusal_metric",
    "get_act_patch_attn_head_all_pos_every", "get_act_patch_attn_head_by_pos_every",
    "get_act_patch_attn_head_k_all_pos", "get_act_patch_attn_head_k_by_pos", "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_out_by_pos", "get_act_patch_attn_head_pattern_all_pos",
    "get_act_patch_attn_head_pattern_by_pos", "get_act_patch_attn_head_pattern_dest_src_pos",
    "get_act_patch_attn_head_q_all_pos", "get_act_patch_attn_head_q_by_pos", "get_act_patch_attn_head_v_all_pos",
    "get_act_patch_attn_head_v_by_pos", "get_act_patch_attn_out", "get_act_patch_block_every",
    "get_act_patch_mlp_out", "get_act_patch_resid_mid", "get_act_patch_resid_pre",
]
