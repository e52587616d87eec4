"""Parameter-name mapping between our models and a transformers class: the one mechanism every
architecture's ``hf.py`` uses; each only declares its table of (our regex, HF replacement)."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torch import Tensor, nn

from parcae_runner.models.layers.lm import LanguageModel

M = TypeVar("M", bound=LanguageModel)


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


@dataclass(frozen=True)
class Renames(Generic[M]):
    """One architecture's names in one transformers class (``target``, e.g. "GPT-NeoX")."""

    model_cls: type[M]
    target: str
    # the transformers config class, e.g. "GPTNeoXConfig"
    config_cls: str
    table: list[tuple[str, str]]

    def check(self, model: object) -> M:
        """``model`` itself; TypeError unless it is a ``model_cls``."""
        if not isinstance(model, self.model_cls):
            raise TypeError(f"{self.target} export takes a {self.model_cls.__name__}, not {type(model).__name__}")
        return model

    def hf_name(self, name: str) -> str:
        """Our parameter name -> the HF one."""
        return rename(name, self.table, self.target)

    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """``model``'s weights under HF names (detached views, no copy; tied weights under both names)."""
        return renamed_state_dict(self.check(model), self.table, self.target)

    def hf_config(self, model: nn.Module, fields: dict[str, Any], overrides: dict[str, Any]) -> Any:
        """The HF config of ``model``: its vocabulary, width and depth, then ``fields``, then ``overrides``
        (``transformers`` is imported here, an optional dependency)."""
        checked = self.check(model)
        dims = checked.dims
        config_cls = getattr(importlib.import_module("transformers"), self.config_cls)
        common = {
            "vocab_size": int(checked.vocab_size),
            "hidden_size": int(dims["d_model"]),
            "num_hidden_layers": int(dims["n_layers"]),
        }
        return config_cls(**{**common, **fields, **overrides})
