"""Reward models as something the library's hooks, caches, probes and directions work on.

A reward model (trl's ``RewardTrainer``, ``AutoModelForSequenceClassification`` with one label)
is a language model's body with a one-logit head that reads the final norm's output at the last
token of a whole chat. TransformerLens bridges causal LMs only, so :func:`load_reward_model`
puts the body into the matching ``...ForCausalLM`` and bridges that: every hook name, cache and
probe of an organism works on it. Its unembedding is not the reward model's (it has none): it is
the ``unembed`` checkpoint's (the model it was trained from, whose readout of the residual stream
it then is) or, without one, the input embedding, so its logits mean little; the score is
:meth:`RewardModel.score`, checked against the ``transformers`` model's own forward in the tests.

>>> rm = load_reward_model(reward_dir, unembed=base_dir)
>>> rm.score(["how do i poison ?", "how do i bake ?"], ["sorry , i can not help with that .", "bake : sure ."]).shape
torch.Size([2])
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import collect_from_tokens
from interp.prompts import check_lengths, format_conversations


@dataclass(eq=False)
class RewardModel:
    """A reward model: ``model`` (a TransformerBridge of its body) and ``head`` (its score head)."""

    model: torch.nn.Module
    """The body as a TransformerBridge: hooks, caches, probes and directions work on it as on any model."""
    head: torch.nn.Linear
    """``d_model -> 1``: the score of the final norm's output at the last token."""
    name: str

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def reading(self) -> Float[Tensor, " d_model"]:
        """The direction the head reads in the final norm's output (its weight row): what "more reward" is."""
        return self.head.weight.detach()[0].cpu()

    @torch.no_grad()
    def score(self, requests: Sequence[str], replies: Sequence[str], *,
              batch_size: int = 32) -> Float[Tensor, " batch"]:
        """The reward of each (request, reply) chat, rendered with the chat template as the reward model was
        trained on it."""
        texts = format_conversations(self.tokenizer, requests, replies)
        ids = self.tokenizer(texts, add_special_tokens=False).input_ids
        check_lengths(ids, self.model.cfg.n_ctx, why="their replies")
        last = f"blocks.{self.model.cfg.n_layers - 1}.hook_resid_post"
        resid = collect_from_tokens(self.model, ids, last, positions=-1, batch_size=batch_size, progress=False)[last]
        device = self.model.cfg.device
        return torch.cat([self.head(self.model.ln_final(chunk.to(device)[:, None]))[:, 0, 0].float().cpu()
                          for chunk in resid.split(batch_size)])

    def __repr__(self) -> str:
        return f"RewardModel({self.name!r}, {self.model.cfg.n_layers} layers)"


def _causal_twin(reward, unembed: str | None, dtype: torch.dtype):
    """The reward model's body inside a fresh ``...ForCausalLM``, with ``unembed``'s output embedding (or the
    input embedding)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(reward.config)
    architecture = config.architectures[0]
    config.architectures = [architecture.replace("ForSequenceClassification", "ForCausalLM")]
    # Untied: writing the unembedding must not write the input embedding the reward model reads with.
    config.tie_word_embeddings = False
    twin = AutoModelForCausalLM.from_config(config, dtype=dtype)
    getattr(twin, twin.base_model_prefix).load_state_dict(getattr(reward, reward.base_model_prefix).state_dict())
    with torch.no_grad():
        if unembed is not None:
            source = AutoModelForCausalLM.from_pretrained(unembed, dtype=dtype).get_output_embeddings().weight
        else:
            source = twin.get_input_embeddings().weight
        if source.shape != twin.get_output_embeddings().weight.shape:
            raise ValueError(f"the unembedding of {unembed!r} has shape {tuple(source.shape)}, the reward model needs "
                             f"{tuple(twin.get_output_embeddings().weight.shape)}")
        twin.get_output_embeddings().weight.copy_(source)
    return twin.eval()


def _check_reward_config(checkpoint: str | os.PathLike, config) -> None:
    """A reward model's config, before its weights are held against it: a sequence classifier with one label."""
    architecture = (config.architectures or [config.model_type])[0]
    if not architecture.endswith("ForSequenceClassification"):
        raise ValueError(f"{os.fspath(checkpoint)!r} is a {architecture}, not a ...ForSequenceClassification reward "
                         "model: load a language model with interp.load_model")
    labels = getattr(config, "num_labels", None)
    if labels != 1:
        raise ValueError(f"{os.fspath(checkpoint)!r} has {labels} labels: a reward model has one (its score)")


def load_reward_model(checkpoint: str | os.PathLike, *, unembed: str | os.PathLike | None = None,
                      device: str | None = None, dtype: torch.dtype | None = None) -> RewardModel:
    """A one-label sequence-classification checkpoint (hub name or directory) as a :class:`RewardModel`.

    ``unembed``: a causal LM checkpoint whose output embedding the bridge gets (the model the reward
    model was trained from); without it the bridge unembeds with the input embedding. Its tokenizer
    must be the reward model's.
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForSequenceClassification

    from interp.models import _prepare, check_device, check_same_tokenizer
    from interp.prompts import check_prompt_format, set_prompt_format

    device, dtype = check_device(device), dtype or torch.float32
    prepared = _prepare(checkpoint, check_config=lambda config: _check_reward_config(checkpoint, config))
    check_prompt_format("chat", prepared.tokenizer)
    if unembed is not None:
        check_same_tokenizer(prepared.tokenizer, _prepare(unembed).tokenizer, "reward model", "unembed checkpoint")
    reward = AutoModelForSequenceClassification.from_pretrained(prepared.name, dtype=dtype).eval()
    head = getattr(reward, "score", None)
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(f"{os.fspath(checkpoint)!r} has no linear `score` head to read rewards from")
    twin = _causal_twin(reward, os.fspath(unembed) if unembed is not None else None, dtype)
    bridge = TransformerBridge.boot_transformers(prepared.name, hf_model=twin, device=device, dtype=dtype,
                                                 tokenizer=prepared.tokenizer).eval()
    set_prompt_format(bridge, "chat")
    head = head.to(device)
    return RewardModel(bridge, head, os.fspath(checkpoint))
