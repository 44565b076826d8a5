"""Start-up: ``import interp`` and the CLI's help load no deep-learning library (they answer at once)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import interp
from interp import cli

HEAVY = ("torch", "transformers", "transformer_lens")


def _heavy_modules_after(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import interp",
    "from interp import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass",
    "from interp import cli\ntry:\n    cli.main(['report', '--help'])\nexcept SystemExit:\n    pass",
    "from interp import cli\ncli.main(['organisms', 'path'])",
    "from interp import organisms\norganisms.prompts('harmful_train')",
])
def test_start_up_imports_no_deep_learning_library(code):
    assert _heavy_modules_after(code) == []


def test_every_top_level_name_still_resolves():
    from interp.cache import Activations
    from interp.models import load_pair

    assert interp.load_pair is load_pair and interp.Activations is Activations
    assert interp.organisms.__name__ == "interp.organisms"
    assert set(interp.__all__) == set(interp._EXPORTS) and set(interp.__all__) <= set(dir(interp))
    for name in interp.__all__:
        assert getattr(interp, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        interp.nope  # noqa: B018


def test_organisms_names_resolve_from_the_zoo_on_first_use():
    from interp import organisms
    from interp.organisms import zoo

    assert organisms.build is zoo.build and organisms.read_zoo_card is zoo.read_zoo_card
    assert organisms.default_dir is zoo.default_dir and set(organisms.__all__) <= set(dir(organisms))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        organisms.nope  # noqa: B018


def test_the_cli_names_every_report_section_in_page_order():
    from interp.report.sections import SECTIONS

    assert cli.REPORT_SECTIONS == tuple(SECTIONS)
