"""Issue 21, first step (experiments only): harmfulness and refusal as two directions, in both models of each pair.

For each aligned organism of each zoo given:

* the **refusal direction**: :func:`interp.directions.find_refusal_direction` on the train prompts (its layer ``L``,
  at its post-instruction position);
* a **harmfulness direction**: the difference in means, harmful-train minus harmless-train, at the request's last
  token (position -2 under the chat template, before ``<|assistant|>``), same layer ``L`` (where Zhao et al. 2025
  read harmfulness).

Every prompt of every split is projected on both, in the base and in the aligned model (the base gets the aligned
model's directions). A projection is reported in units of its train classes: -1 is the harmless-train mean, +1 the
harmful-train mean, 0 the midpoint. ``past 0`` is the share of the split's prompts on the harmful side. A split whose
harmfulness stays past 0 while its refusal projection falls would be *suppression*; one whose harmfulness falls,
*disguise*.

    python experiments/jailbreak_directions.py ZOO [ZOO ...] > experiments/results/jailbreak_directions.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from interp import directions, organisms
from interp.cache import collect_activations

LAST_INSTRUCTION, ANSWER = -2, -1


def _units(x: torch.Tensor, harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
    """Projections rescaled so the harmless-train mean is -1 and the harmful-train mean +1."""
    mid, half = (harmful.mean() + harmless.mean()) / 2, (harmful.mean() - harmless.mean()) / 2
    return (x - mid) / half


def measure(zoo_dir: Path, variant: str) -> list[dict]:
    pair = organisms.load_pair(variant, zoo_dir=zoo_dir, device="cpu", build_if_missing=False)
    harmful, harmless = organisms.prompt_set("harmful_train"), organisms.prompt_set("harmless_train")
    found = directions.find_refusal_direction(pair.aligned, harmful, harmless, refusal_tokens=organisms.REFUSAL_TOKENS,
                                              progress=False)
    layer, hook = found.layer, f"blocks.{found.layer}.hook_resid_pre"
    harm = directions.candidate_directions(pair.aligned, harmful, harmless, positions=[LAST_INSTRUCTION])[0, layer]
    harm, refusal = harm / harm.norm(), found.direction / found.direction.norm()
    rows = []
    for name, model in pair:
        projected = {}
        for split in organisms.SPLITS:
            acts = collect_activations(model, organisms.prompt_set(split), hook,
                                       positions=[LAST_INSTRUCTION, found.position], progress=False)[hook].float()
            projected[split] = (acts[:, 0] @ harm, acts[:, 1] @ refusal)
        for split, (h, r) in projected.items():
            h_units = _units(h, projected["harmful_train"][0], projected["harmless_train"][0])
            r_units = _units(r, projected["harmful_train"][1], projected["harmless_train"][1])
            rows.append({
                "zoo": str(zoo_dir), "seed": json.loads((zoo_dir / "zoo.json").read_text())["seed"],
                "organism": variant, "model": name, "layer": layer, "position": found.position,
                "cosine": round(float(harm @ refusal), 3), "split": split,
                "harmfulness": round(h_units.mean().item(), 3),
                "harmful_side": round((h_units > 0).float().mean().item(), 3),
                "refusal": round(r_units.mean().item(), 3),
                "refusal_side": round((r_units > 0).float().mean().item(), 3),
            })
    return rows


def main() -> None:
    rows = [row for zoo in sys.argv[1:] for variant in organisms.ALIGNED_VARIANTS
            for row in measure(Path(zoo), variant)]
    print("# harmfulness: projection on the harmful-minus-harmless mean at the request's last token; refusal: on")
    print("# the refusal direction at its own position; both at the refusal direction's layer, in units of the train")
    print("# classes (-1 harmless-train mean, +1 harmful-train mean); side: share of the split past 0 (harmful side)")
    print(f"{'seed':>4} {'org':<4} {'model':<8} {'site':>6} {'cos':>6} {'split':<18} {'harm':>6} {'side':>5} "
          f"{'refusal':>7} {'side':>5}")
    for r in rows:
        site = f"L{r['layer']}@{r['position']}"
        print(f"{r['seed']:>4} {r['organism']:<4} {r['model']:<8} {site:>6} "
              f"{r['cosine']:>6.2f} {r['split']:<18} {r['harmfulness']:>6.2f} {r['harmful_side']:>5.0%} "
              f"{r['refusal']:>7.2f} {r['refusal_side']:>5.0%}")
    out = Path(__file__).parent / "results" / "jailbreak_directions.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
