"""Train a dictionary on a pair, measure how well it fits, and ask which aligned-only latents are real.

Latent scaling (Minder et al. 2025): an aligned-only latent ``j`` (decoder ``d_j`` in the aligned model)
may only look aligned-only because the sparsity penalty pushed its base part into other latents or into
the error. For each model ``m`` the scalar ``beta`` that best explains a target ``y_m`` by ``beta f_j d_j``,

    beta_m = sum_n f_nj (d_j . y_nm) / (|d_j|^2 sum_n f_nj^2)        (least squares, closed form)

is computed for two targets: the reconstruction error with the latent's own part put back
(``y = x - x_hat + f_j d_j^m``, "error") and the reconstruction without it (``y = x_hat - f_j d_j^m``,
"reconstruction"). The ratios ``nu = beta_base / beta_aligned`` say how much of the latent the base
has after all; a latent is genuinely aligned-only when both are small (:data:`MAX_NU`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.checks import check_layer
from interp.data import PromptSet
from interp.dictionary.result import Dictionary, fingerprint
from interp.dictionary.tokens import PairedTokens, count_tokens, paired_tokens
from interp.dictionary.train import DictionaryConfig, Kind, inputs, train
from interp.models import ModelPair
from interp.provenance import Provenance

MAX_NU = 0.5
"""A latent passes latent scaling when both of its ratios are below this: the base explains less than half
as much with it as the aligned model does."""
HELD_BACK = 0.1
"""The share of the token rows (of texts drawn at random) kept out of training to measure the fit on."""


def training_rows(n_rows: int) -> int:
    """How many of ``n_rows`` token rows :func:`fit` trains on (about; the cut falls between two texts)."""
    return int(n_rows * (1 - HELD_BACK))


def default_layer(n_layers: int) -> int:
    """Where the report and notebook 08 read: the stream entering the block two thirds of the way down."""
    return 2 * n_layers // 3


@torch.no_grad()
def evaluate(d: Dictionary | None, tokens: PairedTokens, *, module=None, kind: Kind | None = None,
             limit: int = 65536) -> dict:
    """Fraction of variance explained per source, mean L0 and the share of latents that never fire (thresholded
    codes), on up to ``limit`` token rows."""
    module, kind = (d.module, d.kind) if d is not None else (module, kind)
    names = ("base", "aligned") if kind == "crosscoder" else ("difference",)
    rows = [inputs(kind, x) for x in tokens.chunks(limit=limit)]
    x = torch.cat(rows)
    f = torch.cat([module.encode(r) for r in rows])
    x_hat = module.decode(f)
    error = (x - x_hat).pow(2).sum((0, 2))
    total = (x - x.mean(0)).pow(2).sum((0, 2))
    return {"fve": {name: round(float(1 - error[i] / total[i]), 4) for i, name in enumerate(names)},
            "l0": round(float((f > 0).sum(1).float().mean()), 2),
            "dead_fraction": round(float((f > 0).sum(0).eq(0).float().mean()), 4), "n_tokens": len(x)}


@torch.no_grad()
def firing_rates(d: Dictionary, tokens: PairedTokens, *, limit: int = 65536) -> Float[Tensor, " n_latents"]:
    """The share of (up to ``limit``) token rows on which each latent fires (thresholded codes)."""
    fired, n = torch.zeros(d.n_latents), 0
    for x in tokens.chunks(limit=limit):
        fired += (d.module.encode(inputs(d.kind, x)) > 0).sum(0)
        n += len(x)
    return fired / max(n, 1)


def fit(pair: ModelPair, texts: PromptSet | Sequence[str], layer: int, kind: Kind = "crosscoder",
        config: DictionaryConfig | None = None, *, prompt_format: str | None = None,
        progress: bool = True, tokens: PairedTokens | None = None) -> Dictionary:
    """Train a dictionary of ``kind`` (``"crosscoder"`` or ``"diff_sae"``) on ``pair``'s residual stream entering
    ``layer`` at every token of ``texts`` but the first (:func:`interp.dictionary.paired_tokens`).

    A tenth of the token rows (of texts drawn at random) is held back to measure the fit (``Dictionary.stats``). Bad
    input (a layer out of range, too few tokens for ``config.n_latents`` or its batch) is refused before any
    activation is collected. ``tokens``: rows already collected for this pair, texts and layer (e.g. to train both
    kinds on one collection).
    """
    config = config or DictionaryConfig()
    check_layer(pair.base, layer)
    fmt = prompt_format or pair.prompt_format
    if tokens is None:
        n = training_rows(count_tokens(pair, texts, fmt))
        if n < max(config.min_tokens(), config.batch_size):
            raise ValueError(f"{len(texts)} texts give {n} training token rows (after holding back {HELD_BACK:.0%}), "
                             f"too few for {config.n_latents} latents ({config.min_tokens()} needed) or batches of "
                             f"{config.batch_size}; give more text, or fewer latents or a smaller batch")
        tokens = paired_tokens(pair, texts, layer, prompt_format=fmt, progress=progress)
    else:
        made = tokens.provenance
        ours = Provenance.of_pair(pair, texts)
        if (made.models, made.prompts_sha, made.params.get("layer"), made.params.get("prompt_format")) != (
                ours.models, ours.prompts_sha, layer, fmt):
            raise ValueError(f"the token rows were collected from {' vs '.join(made.models)} at layer "
                             f"{made.params.get('layer')} on other texts or another prompt format; collect them with "
                             "paired_tokens(pair, texts, layer, prompt_format=...) for this fit")
    train_rows, held = tokens.split(1 - HELD_BACK)
    module, log = train(train_rows, kind, config, progress=progress)
    stats = evaluate(None, held, module=module, kind=kind)
    provenance = Provenance.of_pair(pair, texts, kind=kind, layer=layer, hook=tokens.provenance.params["hook"],
                                    prompt_format=fmt, n_tokens=len(train_rows), config=config.to_dict())
    return Dictionary(kind, module, layer, config, fingerprint(pair), stats, log, provenance)


@dataclass(frozen=True)
class LatentScaling:
    """``beta`` per model and target, and their ratios ``nu = beta_base / beta_aligned``, for ``latents``."""

    latents: tuple[int, ...]
    beta: dict[str, Tensor]
    """``{"error/base": [n], "error/aligned": [n], "reconstruction/base": [n], "reconstruction/aligned": [n]}``."""
    nu_error: Float[Tensor, " n"]
    nu_reconstruction: Float[Tensor, " n"]

    def table(self):
        """``nu_error`` and ``nu_reconstruction`` per latent, a DataFrame indexed by latent."""
        import pandas as pd

        return pd.DataFrame({"nu_error": self.nu_error.tolist(), "nu_reconstruction": self.nu_reconstruction.tolist()},
                            index=pd.Index(self.latents, name="latent"))

    def plot(self, causal: Sequence[int] = (), static: bool = False,
             title: str = "Latent scaling (ν clipped to [-1, 2])"):
        """``nu`` of the error against ``nu`` of the reconstruction per latent, ``causal`` ones apart; the
        :data:`MAX_NU` cut-off marked (genuinely aligned-only latents sit in the lower left). Ratios are clipped to
        [-1, 2]: a latent that rarely fires can have a tiny ``beta_aligned`` and a ratio in the hundreds."""
        from interp import plotting

        marked = [j in set(causal) for j in self.latents]
        groups = {"causal": [i for i, c in enumerate(marked) if c], "other": [i for i, c in enumerate(marked) if not c]}
        groups = {name: rows for name, rows in groups.items() if rows}
        draw = plotting.scatter_static if static else plotting.scatter
        return draw({g: self.nu_error[rows].clamp(-1, 2) for g, rows in groups.items()},
                    {g: self.nu_reconstruction[rows].clamp(-1, 2) for g, rows in groups.items()}, marks=[MAX_NU],
                    title=title,
                    xlabel="ν error (base / aligned)", ylabel="ν reconstruction (base / aligned)")

    def passed(self, max_nu: float = MAX_NU) -> list[int]:
        """The latents that are aligned-only after all: the aligned model's ``beta`` positive for both targets and both
        ratios within ``±max_nu`` (a ratio that is NaN, from a latent that never fired here, fails)."""
        positive = (self.beta["error/aligned"] > 0) & (self.beta["reconstruction/aligned"] > 0)
        ok = positive & (self.nu_error.abs() < max_nu) & (self.nu_reconstruction.abs() < max_nu)
        return [j for j, keep in zip(self.latents, ok.tolist(), strict=True) if keep]


@torch.no_grad()
def latent_scaling(d: Dictionary, tokens: PairedTokens, latents: Sequence[int] | None = None, *,
                   limit: int = 65536) -> LatentScaling:
    """Latent scaling of a crosscoder's ``latents`` (default: its aligned-only ones) on up to ``limit`` token rows."""
    d._crosscoder_only("latent scaling")
    latents = list(d.latents("aligned-only") if latents is None else latents)
    vectors = d.module.latent_vectors()[latents]           # [n, source, d_model]
    d_aligned = vectors[:, 1]                              # the latent as the aligned model writes it
    own = (vectors * d_aligned[:, None]).sum(-1)          # d_aligned . d_m, [n, source]
    sums = {f"{t}/{m}": torch.zeros(len(latents)) for t in ("error", "reconstruction") for m in ("base", "aligned")}
    f_squared = torch.zeros(len(latents))
    for x in tokens.chunks(limit=limit):
        f_all = d.module.encode(x)
        x_hat = d.module.decode(f_all)
        f = f_all[:, latents]                               # [tokens, n]
        for s, m in enumerate(("base", "aligned")):
            error_dot = (x[:, s] - x_hat[:, s]) @ d_aligned.T   # d_aligned . (x - x_hat), [tokens, n]
            recon_dot = x_hat[:, s] @ d_aligned.T
            sums[f"error/{m}"] += (f * (error_dot + f * own[:, s])).sum(0)
            sums[f"reconstruction/{m}"] += (f * (recon_dot - f * own[:, s])).sum(0)
        f_squared += f.pow(2).sum(0)
    denominator = (f_squared * d_aligned.pow(2).sum(-1)).clamp_min(1e-12)
    beta = {key: value / denominator for key, value in sums.items()}
    return LatentScaling(tuple(latents), beta,
                         beta["error/base"] / beta["error/aligned"],
                         beta["reconstruction/base"] / beta["reconstruction/aligned"])
