"""Editing weights with a refusal direction: weight orthogonalization (Arditi et al. 2024).

:func:`orthogonalize` writes a Hugging Face checkpoint of a bridge's model in which every module
that writes to the residual stream (token and position embeddings, each attention output and MLP
output projection, with their biases) is multiplied by ``I - r r^T``, so the saved model behaves
like the original under :class:`~interp.interventions.AblateDirection` (checked before writing).
The search for the direction is :mod:`interp.directions`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from copy import deepcopy
from pathlib import Path

import torch
from torch import Tensor

from interp import matmul
from interp.checks import check_vector
from interp.directions import RefusalDirection
from interp.interventions import AblateDirection, apply


def _clean_name(name: str) -> str:
    return name.replace("._original_component", "").replace("_original_component.", "")


def _hf_copy(model):
    """A plain Hugging Face model with the bridge's current weights (the bridge wraps the original's modules)."""
    original = model.original_model
    config = deepcopy(original.config)
    # the bridge asks the model for its attention patterns; a checkpoint that kept asking breaks HF's generate
    config.output_attentions = config.output_hidden_states = False
    copy = type(original)(config).to(next(original.parameters()).dtype)
    wanted = copy.state_dict()
    state = {}
    for name, value in original.state_dict().items():
        clean = _clean_name(name)
        if clean in wanted and clean not in state:
            state[clean] = value.detach().clone()
    missing = [k for k in wanted if k not in state]
    if any(not k.endswith("lm_head.weight") for k in missing):
        raise RuntimeError(f"could not map the bridge's weights back to {type(original).__name__}: missing {missing}")
    copy.load_state_dict(state, strict=False)
    copy.tie_weights()
    return copy.eval()


def _residual_writers(model, plain) -> list[str]:
    """Names, in the plain copy ``plain``, of the modules that write into the residual stream."""
    bridge_modules = [model.embed] + ([model.pos_embed] if hasattr(model, "pos_embed") else [])
    for block in model.blocks:
        bridge_modules += [block.attn.o, block.mlp.out]
    names = {}
    for name, module in model.original_model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(_clean_name(name))
    plain_names = {name for name, _ in plain.named_modules()}
    out = []
    for bridge_module in bridge_modules:
        target = getattr(bridge_module, "original_component", bridge_module)
        found = [name for name in names.get(id(target), []) if name in plain_names]
        if not found:
            raise RuntimeError(f"cannot locate {type(target).__name__} in the original model")
        out.append(found[0])
    return out


@torch.no_grad()
def _project_out(module, r: Tensor) -> None:
    from transformers.pytorch_utils import Conv1D

    r = r.to(module.weight.device, module.weight.dtype)
    w = module.weight
    if isinstance(module, torch.nn.Embedding):  # [vocab, d_model]
        w -= (w @ r)[:, None] * r
    elif isinstance(module, Conv1D):  # [d_in, d_model]
        w -= (w @ r)[:, None] * r
    elif isinstance(module, torch.nn.Linear):  # [d_model, d_in]
        w -= r[:, None] * (r @ w)[None, :]
    else:
        raise RuntimeError(f"cannot orthogonalize a {type(module).__name__}")
    bias = getattr(module, "bias", None)
    if bias is not None:
        bias -= (bias @ r) * r


class NotOrthogonalizable(RuntimeError):
    """No weight edit of this model reproduces ablating a direction from its residual stream."""


OUTPUT_NORMS = ("post_feedforward_layernorm",)
"""Modules that normalise a block's output before it joins the residual stream (Gemma 2 and 3 norm both the attention
and the MLP output): ``w * a / rms(a)`` has a component along ``r`` for outputs ``a`` orthogonal to ``r`` unless
``w`` is constant on it, and making ``a`` orthogonal to ``w * r`` instead changes ``rms(a)``: no linear edit of the
projections keeps the direction out while leaving the rest of the output as ablation leaves it."""


def check_orthogonalizable(model) -> None:
    """Raise :class:`NotOrthogonalizable` (saying why) for an architecture that normalises each block's output before
    adding it to the residual stream; Arditi et al.'s models (Llama, Qwen, Gemma 1, Yi) add it as it is."""
    names = [name for name, _ in model.original_model.named_modules()]
    norms = sorted({n.rsplit(".", 1)[-1] for n in names if n.rsplit(".", 1)[-1] in OUTPUT_NORMS})
    if norms:
        raise NotOrthogonalizable(
            f"{type(model.original_model).__name__} normalises each block's output before adding it to the residual "
            f"stream ({', '.join(norms)}): no weight edit keeps a direction out of a normalised output the way "
            "ablating it from the stream does, so weight orthogonalization (Arditi et al.) cannot be taken on it")


def orthogonalized_model(model, direction: RefusalDirection | Tensor, *, check_architecture: bool = True):
    """A Hugging Face copy of ``model`` whose embeddings and attention / MLP outputs cannot write ``direction``.

    Tied input/output embeddings are untied first, so the unembedding stays as it was (as
    under :class:`~interp.interventions.AblateDirection`, which never touches it). An architecture no such edit can
    ablate a direction in is refused first (:func:`check_orthogonalizable`), unless ``check_architecture=False``.
    """
    vector = direction.vector if isinstance(direction, RefusalDirection) else direction
    check_vector(model, vector, "the direction", nonzero=True)
    if check_architecture:
        check_orthogonalizable(model)
    r = (vector / vector.norm()).float()
    hf = _hf_copy(model)
    out_emb, in_emb = hf.get_output_embeddings(), hf.get_input_embeddings()
    if out_emb is not None and out_emb.weight.data_ptr() == in_emb.weight.data_ptr():
        out_emb.weight = torch.nn.Parameter(in_emb.weight.detach().clone())
        hf.config.tie_word_embeddings = False
    for name in _residual_writers(model, hf):
        _project_out(hf.get_submodule(name), r)
    return matmul.use(hf, matmul.of(model))  # multiplying as the model does


@torch.no_grad()
def _check_matches_ablation(model, hf, direction: Tensor, atol: float) -> float:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.d_vocab, (4, 16), generator=gen).to(model.cfg.device)
    with matmul.using(model, torch.float32), matmul.using(hf, torch.float32):  # exact, whatever they run in
        with apply(model, AblateDirection(direction)):
            expected = model(tokens).float()
        got = hf.to(model.cfg.device)(tokens).logits.float()
    error = (got - expected).abs().max().item()
    if error > atol * max(1.0, expected.abs().max().item()):
        raise RuntimeError(
            f"the orthogonalized weights do not reproduce the ablation (max logit difference {error:.3g}): "
            "this architecture writes to the residual stream somewhere orthogonalization does not reach"
        )
    return error


def orthogonalize(
    model, direction: RefusalDirection | Tensor, out_dir: str | Path, *, check: bool = True, atol: float = 1e-4
) -> Path:
    """Write a Hugging Face checkpoint of ``model`` with ``direction`` projected out of its weights.

    Every module that writes into the residual stream (token and position embeddings, each
    attention output and MLP output projection, with their biases) is multiplied by
    ``I - r r^T`` (Arditi et al. 2024), so the saved model behaves like ``model`` under
    :meth:`RefusalDirection.ablation`. With ``check``, that is verified on random tokens before
    writing. ``out_dir`` must not exist; it appears complete or not at all.
    """
    out = Path(out_dir).expanduser()
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new directory for the orthogonalized checkpoint")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the parent directory {out.parent} does not exist")
    vector = direction.vector if isinstance(direction, RefusalDirection) else direction
    check_vector(model, vector, "the direction", nonzero=True)
    hf = orthogonalized_model(model, vector)
    error = _check_matches_ablation(model, hf, vector, atol) if check else None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
    try:
        hf.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)
        card = {"method": "weight orthogonalization (Arditi et al. 2024)",
                "source": str(getattr(model.cfg, "model_name", "")),
                "direction": (vector / vector.norm()).tolist(), "max_logit_difference_vs_ablation": error}
        if isinstance(direction, RefusalDirection):
            card.update(layer=direction.layer, position=direction.position)
        (tmp / "orthogonalization.json").write_text(json.dumps(card, indent=1))
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
