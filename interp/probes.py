"""Linear readouts of a binary label, per layer: what does each model represent, and where?

Two readouts, fitted on one model's residual stream at each layer (``blocks.{l}.hook_resid_post``)
and position:

* ``"mean_diff"`` - difference in means (mass-mean probe, Marks & Tegmark 2023): the direction
  from the negative class mean to the positive one, thresholded half-way between the means;
* ``"logistic"`` - L2-regularised logistic regression, fitted for every layer and position at
  once (one batched L-BFGS problem).

Train and test prompts are split by **concept** (:func:`concept_split`): a concept's prompts
are all on one side, and concepts marked ``held_out`` are only ever tested on, so accuracy
measures generalisation to unseen concepts rather than memorised words. Probes are fitted on
each model and tested on both (transfer), and their directions compared across the pair.

>>> from interp.probes import auroc
>>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
0.75
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import family_resid_post
from interp.data import PromptSet
from interp.models import ModelPair
from interp.provenance import Provenance

METHODS = ("mean_diff", "logistic")
MIN_PER_CLASS = 8


def binary_labels(prompts: PromptSet, positive: str) -> Tensor:
    """1 where a prompt's label is ``positive``, else 0; both classes must be present."""
    if len(prompts.label_names) != 2:
        raise ValueError(f"a probe needs exactly two labels, got {list(prompts.label_names)}")
    prompts.require_labels(positive)
    return torch.tensor([label == positive for label in prompts.labels], dtype=torch.long)


def concept_split(
    prompts: PromptSet, *, group: str = "concept", test_fraction: float = 0.25, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Boolean masks ``(train, test)`` that split by ``group`` (default: concept).

    Rows with ``held_out`` true are always in the test set; of the other groups, about
    ``test_fraction`` of each label's groups are drawn (with ``seed``) into the test set too.
    Without a ``group`` column each prompt is its own group. Each side must hold both labels.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    groups = prompts.column(group) if group in prompts.extra else tuple(range(len(prompts)))
    held = prompts.column("held_out") if "held_out" in prompts.extra else (False,) * len(prompts)
    held_groups = {g for g, h in zip(groups, held, strict=True) if h}
    rng = random.Random(seed)
    test_groups = set(held_groups)
    for label in prompts.label_names:
        free = sorted({g for g, y in zip(groups, prompts.labels, strict=True) if y == label} - held_groups, key=str)
        test_groups |= set(rng.sample(free, round(test_fraction * len(free))))
    test = torch.tensor([g in test_groups for g in groups])
    train = ~test
    for name, mask in (("train", train), ("test", test)):
        present = {prompts.labels[i] for i in mask.nonzero().flatten().tolist()}
        if present != set(prompts.label_names):
            raise ValueError(
                f"the {name} split by {group!r} has labels {sorted(present)}, not both of "
                f"{list(prompts.label_names)}: give more {group}s per label or change test_fraction"
            )
    return train, test


def auroc(scores: Float[Tensor, " n"], labels: Tensor) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties count 1/2)."""
    pos, neg = scores[labels == 1].double(), scores[labels == 0].double()
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs both classes")
    above = (pos[:, None] > neg[None, :]).double().mean()
    ties = (pos[:, None] == neg[None, :]).double().mean()
    return (above + ties / 2).item()


@dataclass(frozen=True)
class LinearProbes:
    """A stack of linear probes ``score = x . weight + bias`` over any leading axes (e.g. layer, position)."""

    weight: Float[Tensor, "... d_model"]
    bias: Tensor
    method: str

    def scores(self, x: Float[Tensor, "n ... d_model"]) -> Tensor:
        return (x.float() * self.weight).sum(-1) + self.bias

    def directions(self) -> Float[Tensor, "... d_model"]:
        """Unit vectors along each probe's weight."""
        return self.weight / self.weight.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def fit_probes(
    x: Float[Tensor, "n ... d_model"], y: Tensor, method: str = "logistic", *, l2: float = 1e-2,
    max_iter: int = 200,
) -> LinearProbes:
    """Fit one probe per slot of the middle axes of ``x`` (``[n, layer, pos, d]`` fits ``layer x pos`` probes).

    Logistic probes are fitted on standardised features (so ``l2`` means the same at every
    layer) and returned in the original units.
    """
    if method not in METHODS:
        raise ValueError(f"unknown probe method {method!r}; choose one of {', '.join(METHODS)}")
    y = y.long()
    counts = [int((y == c).sum()) for c in (0, 1)]
    if min(counts) < MIN_PER_CLASS:
        raise ValueError(f"probes need at least {MIN_PER_CLASS} training prompts per class, got {counts}")
    x = x.float()
    pos_mean, neg_mean = x[y == 1].mean(0), x[y == 0].mean(0)
    if method == "mean_diff":
        weight = pos_mean - neg_mean
        return LinearProbes(weight, -(weight * (pos_mean + neg_mean) / 2).sum(-1), method)
    mu, sigma = x.mean(0), x.std(0).clamp(min=1e-6)
    z = ((x - mu) / sigma).movedim(0, -2)  # [..., n, d]
    w = torch.zeros(z.shape[:-2] + z.shape[-1:], requires_grad=True)
    b = torch.zeros(z.shape[:-2], requires_grad=True)
    target = y.float().expand(z.shape[:-1])
    optimizer = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def loss_fn():
        optimizer.zero_grad()
        logits = (z @ w[..., None])[..., 0] + b[..., None]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
        loss = (loss + l2 * w.square().sum(-1) / 2).sum()
        loss.backward()
        return loss

    optimizer.step(loss_fn)
    w, b = w.detach() / sigma, b.detach()
    return LinearProbes(w, b - (w * mu).sum(-1), method)


def evaluate_probes(probes: LinearProbes, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Accuracy (score > 0 means positive) and AUROC of every probe, shaped like ``probes.bias``."""
    scores = probes.scores(x)  # [n, ...]
    flat = scores.reshape(len(scores), -1)
    accuracy = ((flat > 0).long() == y[:, None]).float().mean(0)
    area = torch.tensor([auroc(flat[:, i], y) for i in range(flat.shape[1])])
    return accuracy.reshape(probes.bias.shape), area.reshape(probes.bias.shape)


@dataclass(frozen=True)
class ProbeResult:
    """Probes of one label fitted on each model of a pair, per layer and position, tested on both.

    ``accuracy[(train, test)]`` and ``auroc[(train, test)]`` are ``[layer, pos]``: probes fitted
    on model ``train``'s activations, tested on model ``test``'s (same held-out prompts);
    ``(m, m)`` is the ordinary within-model score, ``(base, aligned)`` is transfer.
    """

    method: str
    positive: str
    positions: tuple[int, ...]
    probes: dict[str, LinearProbes]
    accuracy: dict[tuple[str, str], Tensor]
    auroc: dict[tuple[str, str], Tensor]
    train_groups: tuple
    test_groups: tuple
    provenance: Provenance | None = None
    shuffled: dict[str, Tensor] = field(default_factory=dict)
    """Per model, ``[draw, layer, pos]`` held-out accuracy of probes fitted on the same training prompts with their
    labels permuted (:func:`shuffled_accuracy`): what fitting reaches without the label, the control a score is read
    against (about 0.5 on average with balanced classes)."""
    n_test: int = 0
    """Held-out prompts every accuracy is measured on."""

    @property
    def n_layers(self) -> int:
        return self.probes["base"].bias.shape[0]

    def control(self, model: str, position: int = -1) -> dict[str, Tensor]:
        """Per layer, the shuffled-label control of ``model``'s own probe at ``position``: ``{"mean", "highest"}``
        held-out accuracy over the permutations."""
        drawn = self.shuffled[model][:, :, self.positions.index(position)]
        return {"mean": drawn.mean(0), "highest": drawn.max(0).values}

    def accuracy_interval(self, fitted: str, tested: str, layer: int, position: int = -1):
        """Held-out accuracy of the probe fitted on ``fitted`` and read on ``tested`` at one layer and position,
        with Wilson's 95% interval over the :attr:`n_test` prompts (:func:`interp.intervals.rate`), taken as
        independent draws: prompts that share a concept are not, and the interval is then too narrow."""
        from interp.intervals import rate

        value = self.accuracy[fitted, tested][layer, self.positions.index(position)].item()
        return rate(round(value * self.n_test), self.n_test)

    @staticmethod
    def curve_name(fitted: str, tested: str, aligned: str = "aligned") -> str:
        """``"base"``, ``"aligned"`` within one model; ``"base → aligned"``: fitted on one, read on the other.

        >>> ProbeResult.curve_name("aligned", "base", aligned="sft")
        'sft → base'
        """
        name = {"base": "base", "aligned": aligned}
        return name[fitted] if fitted == tested else f"{name[fitted]} → {name[tested]}"

    def curves(self, metric: str = "accuracy", position: int = -1, *, aligned: str = "aligned",
               transfer: bool | None = None) -> dict[str, Tensor]:
        """Per-layer curves of ``metric`` (``"accuracy"`` or ``"auroc"``) at one of the probed ``positions``,
        named by :meth:`curve_name`; ``transfer`` keeps only the across-model (True) or within-model
        (False) curves."""
        if metric not in ("accuracy", "auroc"):
            raise ValueError(f"metric must be 'accuracy' or 'auroc', got {metric!r}")
        if position not in self.positions:
            raise ValueError(f"position {position} was not probed; probed: {list(self.positions)}")
        p = self.positions.index(position)
        return {self.curve_name(fitted, tested, aligned): values[:, p]
                for (fitted, tested), values in getattr(self, metric).items()
                if transfer is None or transfer == (fitted != tested)}

    def plot(self, metric: str = "accuracy", position: int = -1, *, static: bool = False, aligned: str = "aligned",
             transfer: bool | None = None, title: str = ""):
        """:meth:`curves` as one figure; ``A → B``: fitted on A, read on B."""
        from interp import plotting

        draw = plotting.layer_curves_static if static else plotting.layer_curves
        ylabel = {"accuracy": "held-out accuracy", "auroc": "held-out AUROC"}[metric]
        return draw(self.curves(metric, position, aligned=aligned, transfer=transfer), ylabel=ylabel, band=None,
                    title=title or f"{self.method} probe for {self.positive!r} (position {position})")

    def cosine(self) -> Float[Tensor, "layer pos"]:
        """Cosine between the base's and the aligned model's probe directions."""
        return (self.probes["base"].directions() * self.probes["aligned"].directions()).sum(-1)

    def table(self):
        """One row per (fitted on, tested on, layer, position)."""
        import pandas as pd

        rows = [
            {"train_model": tr, "test_model": te, "layer": layer, "position": pos,
             "accuracy": self.accuracy[tr, te][layer, p].item(), "auroc": self.auroc[tr, te][layer, p].item()}
            for (tr, te) in self.accuracy for layer in range(self.n_layers) for p, pos in enumerate(self.positions)
        ]
        return pd.DataFrame(rows)


def labels_and_split(prompts: PromptSet, positive: str, split: tuple[Tensor, Tensor] | None
                     ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``(y, (train, test))``: the binary labels and the split (default :func:`concept_split`), checked to hold
    enough prompts of each class on both sides."""
    y = binary_labels(prompts, positive)
    train, test = split if split is not None else concept_split(prompts)
    for name, mask in (("training", train), ("test", test)):
        counts = [int((y[mask] == c).sum()) for c in (0, 1)]
        if min(counts) < MIN_PER_CLASS:
            raise ValueError(f"probes need at least {MIN_PER_CLASS} {name} prompts per class, got {counts}")
    return y, (train, test)


def fit_and_test(x: Mapping[str, Tensor], y: Tensor, train: Tensor, test: Tensor, method: str):
    """Fit probes on each model's activations ``x[name]`` (train rows), test each on every model's (test rows):
    ``(probes by name, accuracy[(fitted, tested)], auroc[(fitted, tested)])``."""
    probes = {name: fit_probes(acts[train], y[train], method) for name, acts in x.items()}
    accuracy, area = {}, {}
    for fitted in x:
        for tested in x:
            accuracy[fitted, tested], area[fitted, tested] = evaluate_probes(probes[fitted], x[tested][test], y[test])
    return probes, accuracy, area


SHUFFLES = 8
"""Label permutations a probe's control is fitted on (:func:`shuffled_accuracy`)."""


def shuffled_accuracy(x: Tensor, y: Tensor, train: Tensor, test: Tensor, method: str, draws: int = SHUFFLES,
                      seed: int = 0) -> Tensor:
    """Held-out accuracy (``[draws, layer, ...]``) of probes fitted on the training rows of ``x`` with their labels
    permuted (``draws`` permutations from a fixed ``seed``) and tested on the true labels: the control a probe's
    accuracy is read against, since in ``d_model`` dimensions a probe fits any labelling of a few hundred training
    prompts (Hewitt and Liang 2019 make the point with control tasks). One permutation alone says little where one
    direction dominates the stream: a chance tilt of the permuted means along it puts the accuracy near 0 or 1, so
    read the mean over draws (about 0.5) and their spread."""
    rows = train.nonzero().flatten()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(draws):
        permuted = y.clone()
        permuted[rows] = y[rows][torch.randperm(len(rows), generator=generator)]
        out.append(evaluate_probes(fit_probes(x[train], permuted[train], method), x[test], y[test])[0])
    return torch.stack(out)


def groups(prompts: PromptSet, mask: Tensor) -> tuple:
    """The concepts (or row numbers, without a ``concept`` column) of the prompts ``mask`` selects, sorted."""
    names = prompts.column("concept") if "concept" in prompts.extra else tuple(range(len(prompts)))
    return tuple(sorted({names[i] for i in mask.nonzero().flatten().tolist()}, key=str))


def probe_pair(
    pair: ModelPair,
    prompts: PromptSet,
    *,
    positive: str = "harmful",
    method: str = "logistic",
    positions: Sequence[int] | int = -1,
    split: tuple[Tensor, Tensor] | None = None,
    batch_size: int = 32,
) -> ProbeResult:
    """Fit ``method`` probes for ``label == positive`` on each model at every layer and position.

    ``split`` is ``(train, test)`` boolean masks; default :func:`concept_split`. Positions
    index each prompt's tokens as formatted by the pair (``-1``: the last, where the answer begins).
    """
    return probe_family({"aligned": pair}, prompts, methods=(method,), positive=positive, positions=positions,
                        split=split, batch_size=batch_size)["aligned", method]


def probe_family(
    family: Mapping[str, ModelPair],
    prompts: PromptSet,
    *,
    methods: Sequence[str] = METHODS,
    positive: str = "harmful",
    positions: Sequence[int] | int = -1,
    split: tuple[Tensor, Tensor] | None = None,
    batch_size: int = 32,
) -> dict[tuple[str, str], ProbeResult]:
    """:func:`probe_pair` for each pair of a family (aligned stages against one base,
    :func:`interp.models.load_family`) and each of ``methods``: ``{(stage, method): ProbeResult}``, every model's
    activations collected once (:func:`interp.cache.family_resid_post`)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown probe method {unknown}; choose from {', '.join(METHODS)}")
    y, (train, test) = labels_and_split(prompts, positive, split)
    positions = [positions] if isinstance(positions, int) else list(positions)
    acts = family_resid_post(family, prompts, positions=positions, batch_size=batch_size)  # [n, layer, pos, d]
    results, controls = {}, {}  # controls: (model's activations, method) -> shuffled-label accuracy (the base's once)
    for stage, pair in family.items():
        for method in methods:
            probes, accuracy, area = fit_and_test(acts[stage], y, train, test, method)
            for x in acts[stage].values():
                if (id(x), method) not in controls:
                    controls[id(x), method] = shuffled_accuracy(x, y, train, test, method)
            results[stage, method] = ProbeResult(
                method, positive, tuple(positions), probes, accuracy, area,
                train_groups=groups(prompts, train), test_groups=groups(prompts, test),
                provenance=Provenance.of_pair(pair, prompts, method=method, positive=positive, positions=positions),
                shuffled={name: controls[id(x), method] for name, x in acts[stage].items()}, n_test=int(test.sum()),
            )
    return results
