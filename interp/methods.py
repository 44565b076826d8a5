"""Several models that share a base, compared on one prompt set: the questions of "one base, many alignment
methods" (SFT, DPO, RL, and the reward model RL was trained against).

Each model is a TransformerBridge (a :class:`~interp.reward.RewardModel`'s ``.model`` included), named by
the caller; they must share ``d_model`` and the tokenizer, and their residual streams are compared
coordinate by coordinate, which is meaningful because every one of them was tuned from the same base.

>>> from interp import organisms
>>> prompts = organisms.prompt_set(["harmful_train", "harmless_train", "harmful_held_out", "harmless_held_out"])
>>> table = probe_transfer({"base": pair.base, "aligned": pair.aligned}, prompts)  # held-out concepts tested
>>> table.auroc["base", "aligned"].shape  # one AUROC per layer: fitted on base, tested on aligned
torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import collect_activations, resid_post_hooks, stack_layers
from interp.data import PromptSet
from interp.probes import LinearProbes, fit_and_test, groups, labels_and_split
from interp.provenance import Provenance


def _check_models(models: Mapping[str, torch.nn.Module]) -> None:
    """At least one model; all of one shape, reading text with one tokenizer."""
    from interp.models import check_same_tokenizer

    if len(models) < 1:
        raise ValueError("give at least one model")
    shapes = {name: (m.cfg.n_layers, m.cfg.d_model) for name, m in models.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the models differ in (n_layers, d_model): {shapes}")
    (first, model), *others = models.items()
    for name, other in others:
        check_same_tokenizer(model.tokenizer, other.tokenizer, first, name)


def resid_post(models: Mapping[str, torch.nn.Module], prompts: PromptSet | Sequence[str], *, position: int = -1,
               batch_size: int = 32) -> dict[str, Float[Tensor, "n layer d_model"]]:
    """Every model's residual stream after each block at ``position`` of each prompt (float32, CPU)."""
    _check_models(models)
    out = {}
    for name, model in models.items():
        hooks = resid_post_hooks(model.cfg.n_layers)
        acts = collect_activations(model, prompts, hooks, positions=position, batch_size=batch_size, progress=False)
        out[name] = stack_layers(acts, hooks)
    return out


@dataclass(frozen=True)
class ProbeTransfer:
    """Probes for one label fitted on each model's residual stream at every layer, tested on every model's.

    ``accuracy[(fitted, tested)]`` and ``auroc[(fitted, tested)]`` are ``[layer]``, on the test prompts.
    """

    models: tuple[str, ...]
    method: str
    position: int
    probes: dict[str, LinearProbes]
    accuracy: dict[tuple[str, str], Tensor]
    auroc: dict[tuple[str, str], Tensor]
    test_groups: tuple
    provenance: Provenance

    def matrix(self, layer: int, metric: str = "auroc"):
        """``metric`` at ``layer`` as a models x models table (rows: fitted on, columns: tested on)."""
        import pandas as pd

        values = getattr(self, metric)
        return pd.DataFrame([[values[f, t][layer].item() for t in self.models] for f in self.models],
                            index=pd.Index(self.models, name="fitted on"),
                            columns=pd.Index(self.models, name="tested on"))

    def directions(self, layer: int) -> dict[str, Tensor]:
        """Each model's probe direction (unit vector) at ``layer``."""
        return {name: p.directions()[layer] for name, p in self.probes.items()}


def probe_transfer(models: Mapping[str, torch.nn.Module], prompts: PromptSet, *, positive: str = "harmful",
                   method: str = "mean_diff", position: int = -1, split: tuple[Tensor, Tensor] | None = None,
                   batch_size: int = 32) -> ProbeTransfer:
    """Fit a ``method`` probe for ``label == positive`` on every model at every layer (``split``: ``(train, test)``
    masks, default :func:`~interp.probes.concept_split`) and test each on every model's activations."""
    y, (train, test) = labels_and_split(prompts, positive, split)
    x = resid_post(models, prompts, position=position, batch_size=batch_size)
    probes, accuracy, area = fit_and_test(x, y, train, test, method)
    return ProbeTransfer(
        tuple(models), method, position, probes, accuracy, area, test_groups=groups(prompts, test),
        provenance=Provenance.of(list(models.values()), prompts.prompts, method=method, positive=positive,
                                 position=position, labels=list(models)),
    )


def cosines(directions: Mapping[str, Tensor]):
    """Pairwise cosines of named vectors, as a table."""
    import pandas as pd

    names = list(directions)
    unit = torch.stack([directions[n].float() / directions[n].float().norm().clamp(min=1e-12) for n in names])
    return pd.DataFrame((unit @ unit.T).numpy(), index=names, columns=names)


def chance_cosine(d_model: int, quantile: float = 0.99) -> float:
    """The ``quantile`` of |cosine| between two random directions in ``d_model`` dimensions (by sampling, fixed seed):
    a cosine above it is not chance."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20000, d_model, generator=g), torch.randn(20000, d_model, generator=g)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).abs()
    return cos.quantile(quantile).item()
