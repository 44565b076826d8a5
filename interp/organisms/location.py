"""Where the organism zoo lives and whether it is built: what ``interp organisms path`` needs, without
torch (the rest of :mod:`interp.organisms.zoo` trains and loads the checkpoints)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from interp.organisms import world

VARIANTS = ("base", "sft", "dpo", "rl")
"""The organisms: language models a user loads and compares."""
ALIGNED_VARIANTS = ("sft", "dpo", "rl")
REWARD = "reward"
"""The reward model ``rl`` was trained against: a sequence-classification checkpoint beside the organisms."""
CHECKPOINTS = (*VARIANTS, REWARD)
ENV_VAR = "INTERP_ORGANISMS_DIR"
CARD = "organism.json"
ZOO_CARD = "zoo.json"


def default_dir() -> Path:
    """Where the zoo lives: ``$INTERP_ORGANISMS_DIR`` or ``~/.cache/interp/organisms-v<world version>``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "interp" / f"organisms-v{world.WORLD_VERSION}"


def is_complete(zoo_dir: str | Path) -> bool:
    """True when ``zoo_dir`` holds a finished build of the current world version."""
    card = Path(zoo_dir) / ZOO_CARD
    if not card.is_file():
        return False
    try:
        info = json.loads(card.read_text())
    except json.JSONDecodeError:
        return False
    return info.get("world_version") == world.WORLD_VERSION and all(
        (Path(zoo_dir) / v / CARD).is_file() for v in CHECKPOINTS
    )
