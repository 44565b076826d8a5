"""Where in depth do the two models' representations part ways, and how do labels separate?

All comparisons are made on the same tokens: prompts are formatted and tokenized once and fed
to both models (:func:`interp.cache.collect_pair_activations`). The residual stream of layer
``l`` is ``blocks.{l}.hook_resid_post``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import (
    Activations,
    Positions,
    collect_from_tokens,
    family_tokens,
    pair_resid_post,
    resid_post_hooks,
)
from interp.data import PromptSet
from interp.metrics import kl_divergence
from interp.models import ModelPair
from interp.provenance import Provenance


def linear_cka(x: Float[Tensor, "n d1"], y: Float[Tensor, "n d2"]) -> float:  # noqa: F722
    """Linear CKA (Kornblith et al. 2019) between two sets of the same ``n`` examples.

    >>> x = torch.randn(50, 8)
    >>> round(linear_cka(x, 3 * x @ torch.linalg.qr(torch.randn(8, 8))[0]), 6)  # rotation and scale invariant
    1.0
    """
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"CKA needs the same n >= 2 examples on both sides, got {x.shape[0]} and {y.shape[0]}")
    x = (x - x.mean(0)).double()
    y = (y - y.mean(0)).double()
    cross = (y.T @ x).square().sum()
    return (cross / ((x.T @ x).norm() * (y.T @ y).norm())).item()


@dataclass(frozen=True)
class RepresentationSimilarity:
    """Per layer, how alike the two models' residual streams are on the same tokens.

    ``cosine[label]`` is ``[batch, layer]`` (mean over each prompt's tokens), ``cka[label]`` and
    ``norm_ratio[label]`` (mean ``||aligned|| / ||base||`` per token) are ``[layer]``. The label
    ``"all"`` pools every prompt.
    """

    labels: tuple[str, ...]
    cosine: dict[str, Tensor]
    cka: dict[str, Tensor]
    norm_ratio: dict[str, Tensor]
    provenance: Provenance | None = None

    def plot(self, static: bool = False, title: str = "Residual stream: cosine between the models, per layer"):
        """Cosine between the models per layer, one curve (mean and 95% band over prompts) per label."""
        from interp import plotting

        draw = plotting.layer_curves_static if static else plotting.layer_curves
        return draw(self.cosine, ylabel="cosine (aligned, base)", legend="prompts", title=title)

    def table(self):
        import pandas as pd

        rows = [{"label": label, "layer": layer, "cosine": self.cosine[label][:, layer].mean().item(),
                 "cka": self.cka[label][layer].item(), "norm_ratio": self.norm_ratio[label][layer].item()}
                for label in self.cosine for layer in range(self.cka[label].shape[0])]
        return pd.DataFrame(rows)


def representation_similarity(
    pair: ModelPair, prompts: PromptSet, *, positions: Positions = "all", batch_size: int = 32
) -> RepresentationSimilarity:
    """Cosine, linear CKA and norm ratio of base vs aligned residual streams, per layer and label.

    Computed one layer at a time from the collected streams, never stacked or copied whole: at every token of a
    real model's prompts (SmolLM2: 30 layers, 576 wide) the streams alone take gigabytes.
    """
    return family_similarity({"aligned": pair}, prompts, positions=positions, batch_size=batch_size)["aligned"]


def family_similarity(
    family: Mapping[str, ModelPair], prompts: PromptSet, *, positions: Positions = "all", batch_size: int = 32
) -> dict[str, RepresentationSimilarity]:
    """:func:`representation_similarity` for each pair of a family (aligned stages against one base,
    :func:`interp.models.load_family`): the base's streams collected once, each aligned model's in turn."""
    first, ids = family_tokens(family, prompts)
    hooks = resid_post_hooks(first.cfg.n_layers)
    collect = dict(positions=positions, batch_size=batch_size, progress=False)
    base = collect_from_tokens(first.base, ids, hooks, desc="collect base", **collect)
    return {stage: _similarity(base, collect_from_tokens(pair.aligned, ids, hooks, desc=f"collect {stage}", **collect),
                               prompts, hooks, Provenance.of_pair(pair, prompts, positions=positions))
            for stage, pair in family.items()}


def _similarity(base_acts: Activations, aligned_acts: Activations, prompts: PromptSet, hooks: Sequence[str],
                provenance: Provenance) -> RepresentationSimilarity:
    mask = base_acts.mask  # [batch, pos] with every position kept, else None
    groups = {"all": torch.ones(len(prompts), dtype=torch.bool)}
    groups.update({label: torch.tensor([x == label for x in prompts.labels]) for label in prompts.label_names})
    cosine, cka, ratio = ({label: [] for label in groups} for _ in range(3))
    for hook in hooks:
        base, aligned = base_acts[hook].float(), aligned_acts[hook].float()  # [batch, (pos,) d_model]
        for label, rows in groups.items():
            b, a = base[rows], aligned[rows]
            cos_tok = torch.nn.functional.cosine_similarity(a, b, dim=-1)
            ratio_tok = a.norm(dim=-1) / b.norm(dim=-1).clamp(min=1e-12)
            if mask is not None:  # [batch, pos]: average over real tokens only
                m = mask[rows]
                w = m.float()
                cosine[label].append((cos_tok * w).sum(-1) / w.sum(-1))
                ratio[label].append((ratio_tok * w).sum() / w.sum())
                flat_b, flat_a = b[m], a[m]
            else:
                cosine[label].append(cos_tok if cos_tok.ndim == 1 else cos_tok.mean(-1))
                ratio[label].append(ratio_tok.mean())
                flat_b, flat_a = b.reshape(-1, b.shape[-1]), a.reshape(-1, a.shape[-1])
            cka[label].append(linear_cka(flat_b, flat_a))
    return RepresentationSimilarity(
        tuple(groups), {k: torch.stack(v, 1) for k, v in cosine.items()}, {k: torch.tensor(v) for k, v in cka.items()},
        {k: torch.stack(v) for k, v in ratio.items()}, provenance)


@dataclass(frozen=True)
class LogitLens:
    """Each layer's residual stream read through the final norm and unembedding, at the answer position.

    ``kl_to_final[model]``: ``[batch, layer]`` KL(final || layer) within one model (nats);
    ``top1_agreement[model]``: ``[batch, layer]`` 1 where the layer's top token is the final one;
    ``cross_model_kl``: ``[batch, layer]`` KL(aligned layer || base layer).
    """

    kl_to_final: dict[str, Tensor]
    top1_agreement: dict[str, Tensor]
    cross_model_kl: Tensor
    provenance: Provenance | None = None


def answer_streams(pair: ModelPair, prompts: PromptSet | Sequence[str], streams: Activations | None,
                   batch_size: int) -> Activations:
    """Both models' streams after every block at the answer position: ``streams`` when given (checked to be those,
    for these prompts), else collected now (:func:`~interp.cache.pair_resid_post`)."""
    if streams is None:
        return pair_resid_post(pair, prompts, batch_size=batch_size)
    want = (len(prompts), pair.cfg.n_layers, pair.cfg.d_model)
    got = {name: tuple(streams[name].shape) for name in ("base", "aligned")}
    if any(shape != want for shape in got.values()):
        raise ValueError(f"streams must be [prompt, layer, d_model] = {list(want)} at the answer position for each "
                         f"model (pair_resid_post of these prompts); got {got}")
    return streams


@torch.no_grad()
def lens_logprobs(
    model, resid: Float[Tensor, "batch layer d_model"], chunk: int = 16  # noqa: F722
) -> Float[Tensor, "batch layer d_vocab"]:  # noqa: F722
    """Log-probabilities read off residual streams with the model's own final norm and unembedding.

    Computed ``chunk`` prompts at a time, in the model's own dtype and device.
    """
    weight = next(model.unembed.parameters())
    out = []
    for part in resid.split(chunk):
        logits = model.unembed(model.ln_final(part.to(weight.device, weight.dtype)))
        out.append(logits.float().log_softmax(-1).cpu())
    return torch.cat(out)


def logit_lens(
    pair: ModelPair, prompts: PromptSet | Sequence[str], *, batch_size: int = 32, chunk: int = 16,
    streams: Activations | None = None,
) -> LogitLens:
    """The logit lens of both models at the answer position (the last prompt token).

    The vocabulary-wide log-probabilities are read and reduced ``chunk`` prompts at a time: for all prompts at once
    they would take ``batch x layer x d_vocab`` floats per model (SmolLM2, 256 prompts: 1.5 GB each). ``streams``:
    :func:`~interp.cache.pair_resid_post` of these prompts, when already collected (e.g. by
    :func:`~interp.cache.family_resid_post`).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of prompts, got {chunk}")
    acts = answer_streams(pair, prompts, streams, batch_size)
    kl, top1, cross = {name: [] for name, _ in pair}, {name: [] for name, _ in pair}, []
    for rows in torch.arange(len(acts["base"])).split(chunk):
        lens = {name: lens_logprobs(pair[name], acts[name][rows], chunk) for name, _ in pair}
        for name, lp in lens.items():
            final = lp[:, -1:]  # the last block's output through the final norm: the model's own prediction
            kl[name].append(kl_divergence(final, lp))
            top1[name].append((lp.argmax(-1) == final.argmax(-1)).float())
        cross.append(kl_divergence(lens["aligned"], lens["base"]))
    return LogitLens({k: torch.cat(v) for k, v in kl.items()}, {k: torch.cat(v) for k, v in top1.items()},
                     torch.cat(cross), Provenance.of_pair(pair, prompts))


@dataclass(frozen=True)
class ClusterSeparation:
    """Per model and layer, how far each prompt sits from the two class means (Jain et al. 2024).

    ``tau[model]`` is ``[batch, layer]``: ``||x - mean_negative|| / ||x - mean_positive||`` at
    the answer position, so > 1 means closer to the ``positive`` class mean. ``accuracy[model]``
    is ``[layer]``: the share of prompts nearer their own class mean.
    """

    positive: str
    negative: str
    labels: tuple[str, ...]
    tau: dict[str, Tensor]
    accuracy: dict[str, Tensor]
    provenance: Provenance | None = None


def cluster_separation(
    pair: ModelPair, prompts: PromptSet, positive: str = "harmful", negative: str = "harmless", *,
    batch_size: int = 32, streams: Activations | None = None,
) -> ClusterSeparation:
    """Distance of each prompt to the ``positive`` vs ``negative`` class mean, per layer, both models (``streams``:
    as :func:`logit_lens` takes them)."""
    prompts.require_labels(positive, negative)
    acts = answer_streams(pair, prompts, streams, batch_size)
    is_pos = torch.tensor([label == positive for label in prompts.labels])
    is_neg = torch.tensor([label == negative for label in prompts.labels])
    tau, accuracy = {}, {}
    for name, _ in pair:
        x = acts[name]  # [batch, layer, d_model]
        d_pos = (x - x[is_pos].mean(0)).norm(dim=-1)
        d_neg = (x - x[is_neg].mean(0)).norm(dim=-1)
        tau[name] = d_neg / d_pos.clamp(min=1e-12)
        right = torch.where(is_pos[:, None], d_pos < d_neg, d_neg < d_pos)[is_pos | is_neg]
        accuracy[name] = right.float().mean(0)
    return ClusterSeparation(positive, negative, tuple(prompts.labels), tau, accuracy,
                             Provenance.of_pair(pair, prompts, positive=positive, negative=negative))


def principal_components(x: Float[Tensor, "n d"], k: int = 2) -> Float[Tensor, "n k"]:  # noqa: F722
    """``x`` centred and projected onto its first ``k`` principal components (``torch.linalg.svd``)."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a [n, d] matrix with n >= 2, got shape {list(x.shape)}")
    centred = x - x.mean(0)
    return centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:k].T


def centroid_distance(points: Float[Tensor, "n d"], positive: Tensor) -> float:  # noqa: F722
    """Distance between the two classes' centroids in units of the mean within-class spread
    (mean distance of a point to its class centroid, averaged over the two classes).

    >>> points = torch.tensor([[0.0, 1.0], [0.0, -1.0], [4.0, 1.0], [4.0, -1.0]])
    >>> centroid_distance(points, torch.tensor([False, False, True, True]))
    4.0
    """
    positive = torch.as_tensor(positive, dtype=torch.bool)
    a, b = points[positive], points[~positive]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("centroid_distance needs points of both classes")
    spread = ((a - a.mean(0)).norm(dim=1).mean() + (b - b.mean(0)).norm(dim=1).mean()) / 2
    return ((a.mean(0) - b.mean(0)).norm() / spread).item()
