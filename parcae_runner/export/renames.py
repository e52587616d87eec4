"""Parameter-name mapping between our models and a transformers class: the one mechanism every
exporter uses; each exporter only declares its table of (our regex, HF replacement)."""

from __future__ import annotations

import re

from torch import Tensor, nn


def rename(name: str, renames: list[tuple[str, str]], target: str) -> str:
    """The first matching rule's rewrite of ``name``; KeyError when no rule matches."""
    for pattern, repl in renames:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    raise KeyError(f"no HF {target} name for parameter {name!r}")


def renamed_state_dict(model: nn.Module, renames: list[tuple[str, str]], target: str) -> dict[str, Tensor]:
    """``model``'s weights under HF names: detached views of its own tensors (no copy); a tied weight
    appears under both names, as ``state_dict()`` lists it."""
    return {rename(k, renames, target): v for k, v in model.state_dict().items()}
