"""Load a base/aligned checkpoint pair and check that the two can be compared.

A :class:`ModelPair` holds two TransformerLens ``TransformerBridge`` models, the one tokenizer
they share, their names, and the *prompt-format policy*: how a user request becomes the text
both models read. Studies of base models show them the aligned model's chat template, so that
is the default (``"chat"``); ``"raw"`` passes requests through untouched, and any string with a
``{prompt}`` field (``"Question: {prompt}\\nAnswer:"``) is used as a template.

Comparability is checked from configs and tokenizers *before* any weights are loaded, and
again on the loaded bridges (hook names); a mismatch raises :class:`IncompatiblePairError`
naming the property and both values.

Axis names used in this package: ``batch pos layer head d_model d_head d_mlp d_vocab``, and
``model`` for the checkpoint axis (``"base"``, ``"aligned"``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformer_lens.model_bridge.sources.transformers import setup_tokenizer
from transformers import AutoConfig, AutoTokenizer, BatchEncoding, PretrainedConfig, PreTrainedTokenizerBase

from interp import gguf
from interp import matmul as _matmul  # the keyword ``matmul`` names a choice
from interp.checkpoint_files import check_inventory, check_weight_files, missing_shards, same_weights
from interp.interventions import generate
from interp.prompts import check_prompt_format, format_prompts, pad_batch, pad_id, set_prompt_format, tokenize

MODEL_AXIS = ("base", "aligned")
PROBE_TEXTS = (
    "Hello world! How do I bake bread?",
    "how do i poison ?",
    "The quick brown fox, 1234 — naïve café.",
)
"""Texts both tokenizers must split identically (beyond having the same vocabulary)."""


class IncompatiblePairError(ValueError):
    """The two checkpoints cannot be compared position by position."""


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint name or directory could not be resolved."""


class IdenticalCheckpointsError(ValueError):
    """Base and aligned are the same weights: every difference between them would be zero."""


@dataclass(eq=False)
class ModelPair:
    """Two comparable models, their shared tokenizer and the prompt-format policy.

    Iterating yields ``("base", bridge), ("aligned", bridge)``. ``tokenizer`` is the one every analysis reads prompts
    with: the aligned bridge's (TransformerLens's wrap of the aligned checkpoint's tokenizer), so :meth:`to_tokens`,
    the analyses, generation and the report give the same ids for the same request. With ``prompt_format="raw"`` that
    tokenizer puts the checkpoint's BOS token first even where the checkpoint's own tokenizer adds none (GPT-2's):
    TransformerLens's policy, kept everywhere.
    """

    base: torch.nn.Module
    aligned: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    base_name: str
    aligned_name: str
    prompt_format: str = "chat"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        check_prompt_format(self.prompt_format, self.tokenizer)
        for model in (self.base, self.aligned):
            set_prompt_format(model, self.prompt_format)  # single-model functions read the pair's policy

    def __iter__(self) -> Iterator[tuple[str, torch.nn.Module]]:
        yield "base", self.base
        yield "aligned", self.aligned

    def __getitem__(self, which: str) -> torch.nn.Module:
        if which not in MODEL_AXIS:
            raise KeyError(f"a ModelPair holds {MODEL_AXIS}, not {which!r}")
        return getattr(self, which)

    def __repr__(self) -> str:
        cfg = self.base.cfg
        notes = {k: v for k, v in self.metadata.get("quantization", {}).items() if v}
        quantized = f", quantization={notes!r}" if notes else ""
        return (
            f"ModelPair(base={self.base_name!r}, aligned={self.aligned_name!r}, n_layers={cfg.n_layers}, "
            f"d_model={cfg.d_model}, n_heads={cfg.n_heads}, prompt_format={self.prompt_format!r}{quantized})"
        )

    @property
    def cfg(self):
        """The (shared) TransformerLens config; shapes are the same for both models."""
        return self.base.cfg

    @property
    def n_ctx(self) -> int:
        """How many positions both models read (the shorter context, should they differ)."""
        return min(self.base.cfg.n_ctx, self.aligned.cfg.n_ctx)

    def format(self, prompts: str | Sequence[str]) -> list[str]:
        """Render user requests as the text both models read, under the pair's policy.

        >>> pair.format("how do i bake ?")
        ['<bos> <|user|> how do i bake ? <|assistant|>']
        """
        return format_prompts(self.tokenizer, prompts, self.prompt_format)

    def to_tokens(self, prompts: str | Sequence[str], *, padding_side: str = "left") -> BatchEncoding:
        """Format and tokenize requests once, for both models.

        Returns ``input_ids`` and ``attention_mask``, each ``[batch, pos]``, padded on
        ``padding_side`` (left by default, so the last position is every prompt's last token).
        """
        ids = tokenize(self.tokenizer, prompts, self.prompt_format, n_ctx=self.n_ctx)
        input_ids, attention_mask = pad_batch(ids, pad_id(self.tokenizer), padding_side)
        return BatchEncoding({"input_ids": input_ids, "attention_mask": attention_mask})

    def generate(
        self, prompts: str | Sequence[str], *, max_new_tokens: int = 16, batch_size: int = 32
    ) -> dict[str, list[str]]:
        """Greedy replies of both models to the same requests: ``{"base": [...], "aligned": [...]}``.

        For sampling or replies under interventions, see :func:`interp.interventions.generate`.
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return {
            name: generate(model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           prompt_format=self.prompt_format)
            for name, model in self
        }


HUB_NAME = re.compile(r"(?:[\w.-]{1,96}/)?[\w.-]{1,96}")
"""What the Hugging Face hub accepts as a repository name: ``name`` or ``org/name`` (``huggingface_hub`` says more)."""


def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """A local checkpoint directory or GGUF file (checked) or a hub name (passed through unchanged).

    A GGUF file may be named directly, or by a directory that holds exactly one ``.gguf`` file and
    no ``config.json``; :func:`materialize_checkpoint` turns it into a directory.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    try:
        exists, dangling = path.exists(), path.is_symlink() and not path.exists()
    except OSError:  # a name too long to be a path
        exists = dangling = False
    if gguf.is_gguf(text):
        return str(gguf.check_gguf_file(path))
    if dangling:
        raise CheckpointNotFoundError(f"{text!r} is a symbolic link to nothing that exists (a broken link or one that "
                                      "points to itself): give the checkpoint's own path")
    looks_local = exists or text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/"
    if not looks_local:
        if not HUB_NAME.fullmatch(text):
            raise CheckpointNotFoundError(
                f"{text[:80]!r}{'...' if len(text) > 80 else ''} is neither a local checkpoint nor a valid hub name "
                "(a hub name is 'name' or 'org/name', at most 96 characters of letters, digits, '-', '_' and '.')")
        return text  # "org/name" or "name": a hub checkpoint, fetched (or found in the HF cache) on load
    if not exists:
        raise CheckpointNotFoundError(f"checkpoint directory {text!r} does not exist")
    if not path.is_dir():
        raise CheckpointNotFoundError(f"{text!r} is a file; a checkpoint is a directory with a config.json "
                                      "or a .gguf file")
    if not (path / "config.json").is_file():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return str(gguf.check_gguf_file(found[0]))
        if found:
            raise CheckpointNotFoundError(f"{text!r} holds several GGUF files ({', '.join(f.name for f in found)}): "
                                          "give the path of the one to load")
        raise CheckpointNotFoundError(
            f"{text!r} is not a Hugging Face checkpoint: it has no config.json "
            "(save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))"
        )
    return str(path)


def materialize_checkpoint(resolved: str) -> str:
    """A resolved checkpoint as something transformers loads: a GGUF file becomes a cached directory."""
    return str(gguf.materialize(resolved)) if gguf.is_gguf(resolved) else resolved


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "*.tiktoken")
"""Files one of which a saved tokenizer has (patterns)."""


def _load_config_and_tokenizer(name: str) -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    local = Path(name).is_dir()
    if local and not any(any(Path(name).glob(pattern)) for pattern in TOKENIZER_FILES):
        raise CheckpointNotFoundError(
            f"checkpoint directory {name!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): save it beside "
            "the weights with tokenizer.save_pretrained(dir)"
        )
    where = ("" if local else
             "\nA hub name needs network access (or the Hugging Face cache); a local checkpoint needs a path.")
    loaded = []
    for what, load in (("config", AutoConfig.from_pretrained), ("tokenizer", AutoTokenizer.from_pretrained)):
        try:
            loaded.append(load(name))
        except (OSError, ValueError) as e:
            raise CheckpointNotFoundError(f"could not load the config and tokenizer of {name!r} (its {what}): "
                                          f"{e}{where}") from e
        except ImportError:
            raise  # a package the tokenizer needs (sentencepiece, tiktoken): not the file's fault
        except Exception as e:  # noqa: BLE001 - a damaged file fails in whatever way its parser does: name it
            detail = " ".join(str(e).split())
            raise ValueError(f"the {what} of {name!r} is damaged or invalid ({type(e).__name__}: {detail[:300]}); "
                             f"fix or save it again ({what}.save_pretrained(dir))") from None
    return loaded[0], loaded[1]


def _shape(config: PretrainedConfig) -> dict[str, object]:
    text = config.get_text_config()
    return {
        "architecture": (config.architectures or [config.model_type])[0],
        "n_layers": text.num_hidden_layers,
        "d_model": text.hidden_size,
        "n_heads": text.num_attention_heads,
        "n_key_value_heads": getattr(text, "num_key_value_heads", None) or text.num_attention_heads,
        "d_mlp": getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None),
        "d_vocab": text.vocab_size,
    }


def _differ(prop: str, base, aligned, base_name: str = "base", aligned_name: str = "aligned") -> IncompatiblePairError:
    return IncompatiblePairError(f"the checkpoints differ in {prop}: {base_name} has {base}, {aligned_name} has "
                                 f"{aligned}")


def check_compatible(
    base_config: PretrainedConfig,
    aligned_config: PretrainedConfig,
    base_tokenizer: PreTrainedTokenizerBase,
    aligned_tokenizer: PreTrainedTokenizerBase,
) -> None:
    """Raise :class:`IncompatiblePairError` unless shapes, vocabulary and tokenization agree."""
    base_shape, aligned_shape = _shape(base_config), _shape(aligned_config)
    for prop in base_shape:
        if base_shape[prop] != aligned_shape[prop]:
            raise _differ(prop, base_shape[prop], aligned_shape[prop])
    check_same_tokenizer(base_tokenizer, aligned_tokenizer)


def check_same_tokenizer(first: PreTrainedTokenizerBase, second: PreTrainedTokenizerBase,
                         first_name: str = "base", second_name: str = "aligned") -> None:
    """Raise :class:`IncompatiblePairError` unless the two tokenizers share their vocabulary and split
    :data:`PROBE_TEXTS` identically."""
    first_vocab, second_vocab = first.get_vocab(), second.get_vocab()
    if first_vocab != second_vocab:
        only_first = sorted(set(first_vocab) - set(second_vocab))[:5]
        only_second = sorted(set(second_vocab) - set(first_vocab))[:5]
        raise _differ(
            "tokenizer vocabulary",
            f"{len(first_vocab)} tokens (e.g. only here: {only_first})",
            f"{len(second_vocab)} tokens (e.g. only here: {only_second})", first_name, second_name,
        )
    for text in PROBE_TEXTS:
        a, b = first(text).input_ids, second(text).input_ids
        if a != b:
            raise _differ(f"tokenization of {text!r}", a, b, first_name, second_name)


def check_hooks(base, aligned) -> None:
    """Both bridges must expose the same hook points (same names, so caches line up)."""
    b, a = set(base.hook_dict), set(aligned.hook_dict)
    if b != a:
        raise _differ("hook names", f"{len(b)} hooks (e.g. only here: {sorted(b - a)[:5]})",
                      f"{len(a)} hooks (e.g. only here: {sorted(a - b)[:5]})")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> str:
    """``device`` (default :func:`default_device`) if torch can use it here, else a ``ValueError`` saying why."""
    if device is None:
        return default_device()
    try:
        kind = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:1', 'mps', ...") from None
    if kind.type == "meta":
        raise ValueError("device 'meta' holds shapes, not weights: no analysis can run on it; use 'cpu' or 'cuda'")
    if kind.type == "cpu":
        return device
    backend = torch.backends.mps if kind.type == "mps" else getattr(torch, kind.type, None)
    if backend is None or not backend.is_available():
        raise ValueError(f"device {device!r} is not available here (this torch, {torch.__version__}, cannot use "
                         f"{kind.type}); use {default_device()!r}")
    count = getattr(backend, "device_count", lambda: 1)()
    if kind.index is not None and kind.index >= count:
        raise ValueError(f"device {device!r} does not exist: this machine has {count} {kind.type} device(s)")
    return device


WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The dtypes a checkpoint may load in, by name (``dtype="bfloat16"``)."""


def check_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``dtype`` (None: float32; a floating-point ``torch.dtype``; or a name of :data:`WEIGHT_DTYPES`) as a
    ``torch.dtype`` (or None), else a ``ValueError`` saying what is accepted.

    >>> check_dtype("bfloat16")
    torch.bfloat16
    """
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in WEIGHT_DTYPES:
        return WEIGHT_DTYPES[dtype.removeprefix("torch.")]
    hint = (" (for bfloat16 products where the device multiplies them natively, keep float32 weights and pass "
            "matmul='auto')" if dtype == "auto" else "")
    raise ValueError(f"dtype must be a floating-point torch.dtype or one of "
                     f"{', '.join(map(repr, sorted(WEIGHT_DTYPES)))}, got {dtype!r}{hint}")


def load_bridge(name: str, tokenizer: PreTrainedTokenizerBase, device: str, dtype: torch.dtype):
    """One checkpoint as a TransformerBridge in eval mode."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(name, device=device, dtype=dtype, tokenizer=tokenizer)
    return bridge.eval()


@dataclass(frozen=True)
class CheckedPair:
    """What :func:`check_checkpoints` found: the names to load, the shared tokenizer, the context length;
    :func:`load_checked` loads it without checking again."""

    base: str
    aligned: str
    tokenizer: PreTrainedTokenizerBase
    n_ctx: int | None
    config: PretrainedConfig
    """The aligned checkpoint's (the two agree in shape)."""
    given: tuple[str, str]
    """The two checkpoints as the caller named them (hub name, folder or GGUF file), for the pair's names."""
    prompt_format: str


def context_length(config: PretrainedConfig) -> int | None:
    """How many positions a checkpoint reads (``max_position_embeddings``, ``n_positions`` or ``n_ctx``)."""
    text = config.get_text_config()
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        if isinstance(getattr(text, key, None), int):
            return getattr(text, key)
    return None


def local_files(name: str) -> Path | None:
    """Where a checkpoint's files are on this machine: its own path, or a hub name's snapshot in the
    Hugging Face cache; None for a hub checkpoint not downloaded yet."""
    if Path(name).exists():
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _Checkpoint:
    name: str  # what transformers loads: a hub name or a directory
    config: PretrainedConfig
    tokenizer: PreTrainedTokenizerBase


def _prepare(checkpoint: str | os.PathLike,
             check_config: Callable[[PretrainedConfig], None] | None = None) -> _Checkpoint:
    """One checkpoint, checked from its files: the name to load, its config and its tokenizer. A local checkpoint's
    weight files, or a hub checkpoint's in the Hugging Face cache, must be whole and fit the config (a hub snapshot
    that lacks shards is left to the hub client, which finishes the download).
    ``check_config`` sees the config before its weights are held against it, so a caller's own complaint
    about the config (a reward model's label count) comes before the generic shape mismatch it causes."""
    name = materialize_checkpoint(resolve_checkpoint(checkpoint))
    files = local_files(name)  # a hub name's files too, once downloaded (a partial download is the hub's to finish)
    if files is not None and files.is_dir() and Path(name) != files and missing_shards(files):
        files = None
    if files is not None:
        check_weight_files(files)
    config, tokenizer = _load_config_and_tokenizer(name)
    if check_config is not None:
        check_config(config)
    if files is not None and files.is_dir():
        check_inventory(files, config)
    # as TransformerLens will wrap it (BOS first, a pad token), so the ids read before loading are the pair's
    return _Checkpoint(name, config, setup_tokenizer(tokenizer))


VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version")


def _model_settings(config: PretrainedConfig) -> dict:
    """What of a config can change the model: the keys its class knows (an extra key no code reads is noise), less
    :data:`VOLATILE_CONFIG_KEYS`."""
    known = set(type(config)().to_dict())
    return {k: v for k, v in config.to_dict().items() if k in known and k not in VOLATILE_CONFIG_KEYS}


def check_not_identical(base: _Checkpoint, aligned: _Checkpoint, base_label: str, aligned_label: str) -> None:
    """Raise :class:`IdenticalCheckpointsError` when the two checkpoints are the same model: the same
    settings (:func:`_model_settings`) and the same tensors, whatever files hold them
    (:func:`~interp.checkpoint_files.same_weights`; hub checkpoints not downloaded yet: the same name)."""
    configs = [_model_settings(c.config) for c in (base, aligned)]
    if configs[0] != configs[1]:
        return
    base_files, aligned_files = local_files(base.name), local_files(aligned.name)
    same = same_weights(base_files, aligned_files) if base_files and aligned_files else base.name == aligned.name
    if same:
        raise IdenticalCheckpointsError(
            f"base {base_label!r} and aligned {aligned_label!r} hold the same weights, so every difference between "
            "them is zero: give two different checkpoints, or pass allow_identical=True (--allow-identical) to "
            "compare a checkpoint with itself on purpose (a null control)"
        )


def check_checkpoints(
    base: str | os.PathLike, aligned: str | os.PathLike, prompt_format: str = "chat", *,
    allow_identical: bool = False,
) -> CheckedPair:
    """Everything :func:`load_pair` checks before loading weights: both checkpoints exist, their
    weight files are whole, they are not the same model (unless ``allow_identical``), their
    configs and tokenizers agree, the prompt format suits the tokenizer.

    Reads configs, tokenizers and file headers only, so it fails fast; the exceptions are a GGUF
    file met for the first time, which is dequantized into a cached directory first (seconds for
    small models), and two checkpoints whose weights agree in every sampled chunk, which are then
    compared whole. ``n_ctx`` is the shorter of the two context lengths.
    """
    first, second = _prepare(base), _prepare(aligned)
    check_compatible(first.config, second.config, first.tokenizer, second.tokenizer)
    check_prompt_format(prompt_format, second.tokenizer)
    if not allow_identical:
        check_not_identical(first, second, os.fspath(base), os.fspath(aligned))
    lengths = [n for n in (context_length(first.config), context_length(second.config)) if n is not None]
    return CheckedPair(first.name, second.name, second.tokenizer, min(lengths, default=None), second.config,
                       (os.fspath(base), os.fspath(aligned)), prompt_format)


class NonFiniteWeightsError(ValueError):
    """A checkpoint holds NaN or infinite weights: every number computed through them is suspect."""


def check_finite(model: torch.nn.Module, name: str) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the tensors of ``model`` that hold NaN or inf."""
    with torch.no_grad():  # a sum is NaN or inf when any value is (one pass, no mask); only those are counted
        suspects = [(k, p) for k, p in model.named_parameters() if not torch.isfinite(p.sum())]
        bad = [f"{k.replace('._original_component', '')} ({int((~torch.isfinite(p)).sum())} values)"
               for k, p in suspects if not torch.isfinite(p).all()]  # named as in the checkpoint
    if bad:
        raise NonFiniteWeightsError(
            f"{name} holds NaN or infinite weights in {len(bad)} tensor(s): {', '.join(bad[:4])}"
            + (f" and {len(bad) - 4} more" if len(bad) > 4 else "") + "; every number computed through them is "
            "suspect (a damaged file or a diverged training run). To study such a model on purpose, pass "
            "allow_nonfinite=True (--allow-nonfinite)")


def _load(name: str, tokenizer: PreTrainedTokenizerBase, device: str, dtype: torch.dtype | None,
          prompt_format: str, product_dtype: torch.dtype = torch.float32, allow_nonfinite: bool = False):
    bridge = load_bridge(name, tokenizer, device, dtype or torch.float32)
    if not allow_nonfinite:
        check_finite(bridge.original_model, name)
    set_prompt_format(bridge, prompt_format)
    return _matmul.use(bridge, product_dtype)


def load_model(
    checkpoint: str | os.PathLike, *, device: str | None = None, dtype: torch.dtype | None = None,
    prompt_format: str = "chat", matmul: str | torch.dtype | None = None, allow_nonfinite: bool = False,
):
    """One checkpoint (hub name, local directory or GGUF file) as a TransformerBridge in eval mode, checked as
    :func:`load_pair` checks each of its two, and reading prompts under ``prompt_format``.

    >>> model = load_model(aligned_dir)
    >>> model.cfg.n_layers
    2
    """
    device, dtype = check_device(device), check_dtype(dtype)
    checkpoint = _prepare(checkpoint)
    check_prompt_format(prompt_format, checkpoint.tokenizer)
    products = _matmul.resolve(matmul, device, dtype)
    return _load(checkpoint.name, checkpoint.tokenizer, device, dtype, prompt_format, products, allow_nonfinite)


def load_pair(
    base: str | os.PathLike,
    aligned: str | os.PathLike,
    *,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    prompt_format: str = "chat",
    allow_identical: bool = False,
    matmul: str | torch.dtype | None = None,
    allow_nonfinite: bool = False,
) -> ModelPair:
    """Load two checkpoints (hub names, local directories or GGUF files) as a checked :class:`ModelPair`.

    Both models use the aligned checkpoint's tokenizer (after checking that the base's
    tokenizes identically). ``device`` defaults to CUDA when available, ``dtype`` to float32; ``matmul``
    ``"bfloat16"`` (or ``"auto"``: where the device does it natively) takes the linear products in bfloat16 and keeps
    everything else float32 (:mod:`interp.matmul`: 2-2.5x faster on a CPU with AVX512-BF16).
    Two checkpoints holding the same weights are an :class:`IdenticalCheckpointsError` unless
    ``allow_identical`` (a null control); a checkpoint whose weights hold NaN or inf is a
    :class:`NonFiniteWeightsError` unless ``allow_nonfinite``; for one model, see :func:`load_model`.

    >>> pair = load_pair(base_dir, aligned_dir)
    >>> pair.aligned(pair.to_tokens(["how do i bake ?"]).input_ids).shape
    torch.Size([1, 8, 205])
    """
    return load_family(base, {"aligned": aligned}, device=device, dtype=dtype, prompt_format=prompt_format,
                       allow_identical=allow_identical, matmul=matmul, allow_nonfinite=allow_nonfinite)["aligned"]


def load_family(
    base: str | os.PathLike,
    aligned: Mapping[str, str | os.PathLike],
    *,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    prompt_format: str = "chat",
    allow_identical: bool = False,
    matmul: str | torch.dtype | None = None,
    allow_nonfinite: bool = False,
) -> dict[str, ModelPair]:
    """Several aligned checkpoints against one base, ``{stage: ModelPair}``, each pair checked as :func:`load_pair`
    checks it and the base loaded once: every pair's ``base`` is the same model (run it once for all of them, e.g.
    :func:`interp.cache.family_resid_post`).

    >>> family = load_family(base_dir, {"sft": aligned_dir, "dpo": aligned_dir})
    >>> family["sft"].base is family["dpo"].base
    True
    """
    if not aligned:
        raise ValueError("load_family needs at least one aligned checkpoint")
    device, dtype = check_device(device), check_dtype(dtype)
    _matmul.resolve(matmul, device, dtype)  # a bad choice fails before the checks read any file
    checked = {stage: check_checkpoints(base, path, prompt_format, allow_identical=allow_identical)
               for stage, path in aligned.items()}
    return load_checked(checked, device=device, dtype=dtype, matmul=matmul, allow_nonfinite=allow_nonfinite)


def load_checked(
    checked: Mapping[str, CheckedPair],
    *,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    matmul: str | torch.dtype | None = None,
    allow_nonfinite: bool = False,
) -> dict[str, ModelPair]:
    """Load what :func:`check_checkpoints` passed, ``{stage: CheckedPair}`` sharing one base, as ``{stage:
    ModelPair}`` without reading the files' headers again (for a caller, like ``interp report``, that checked them
    before other work). The weights are checked as they load: every one finite, unless ``allow_nonfinite``."""
    if not checked or len({(c.base, c.prompt_format) for c in checked.values()}) != 1:
        raise ValueError("load_checked needs at least one checked pair, all with the same base and prompt format")
    device, dtype = check_device(device), check_dtype(dtype)
    chosen = _matmul.resolve(matmul, device, dtype)
    dtype = dtype or torch.float32
    first = next(iter(checked.values()))
    prompt_format = first.prompt_format
    base_bridge = _load(first.base, first.tokenizer, device, dtype, prompt_format, chosen, allow_nonfinite)
    family = {}
    for stage, c in checked.items():
        aligned_bridge = _load(c.aligned, c.tokenizer, device, dtype, c.prompt_format, chosen, allow_nonfinite)
        check_hooks(base_bridge, aligned_bridge)
        family[stage] = ModelPair(
            base=base_bridge,
            aligned=aligned_bridge,
            tokenizer=aligned_bridge.tokenizer,  # the analyses' own (one tokenization per pair: see ModelPair)
            base_name=c.given[0],
            aligned_name=c.given[1],
            prompt_format=c.prompt_format,
            metadata={"device": device, "dtype": str(dtype), "matmul": _matmul.name(chosen),
                      "quantization": {"base": gguf.quantization_note(c.base),
                                       "aligned": gguf.quantization_note(c.aligned)}},
        )
    return family
