"""Weight formats other than Hugging Face folders that an architecture reads and writes (its spec's ``formats``).

An architecture declares each format once on its :class:`~parcae_runner.models.registry.Architecture` (e.g. RWKV-7's
BlinkDL ``.pth`` in ``models/rwkv7/``); ``train.init_from=<file>``, its validation and ``export --format`` ask this
module, so none of them names an architecture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from torch import nn

from parcae_runner.models.layers.lm import LanguageModel


@dataclass(frozen=True)
class WeightFormat:
    # what ``export --format`` takes, e.g. "blinkdl"; also the folder a run's exports go to
    name: str
    # a ``train.init_from`` path with this ending is a file of this format, e.g. ".pth"
    suffix: str
    # one line for help and error messages
    description: str
    # import_into(model, path) loads the file's weights into the built model; ValueError when they do not fit it
    # (model: the architecture's own model class, hence Any)
    import_into: Callable[[Any, Path], None]
    # export(model, path) writes the file and returns its path; ValueError when the model cannot be written in it
    export: Callable[[Any, Path], Path]


def _all_formats() -> list[tuple[str, WeightFormat]]:
    from parcae_runner.models.registry import ARCHITECTURES

    return [(arch.name, fmt) for arch in ARCHITECTURES.values() for fmt in arch.formats]


def format_names() -> list[str]:
    """Every weight-format name some registered architecture declares, sorted."""
    return sorted({fmt.name for _, fmt in _all_formats()})


def is_weight_file(source: str) -> bool:
    """Whether ``source`` ends with the suffix of a format some architecture declares (else: an exported folder)."""
    return any(source.endswith(fmt.suffix) for _, fmt in _all_formats())


def _describe(arch_name: str) -> str:
    from parcae_runner.models.registry import get_architecture

    formats = get_architecture(arch_name).formats
    return ", ".join(f"{fmt.name} ({fmt.suffix}: {fmt.description})" for fmt in formats) or "none"


def _declared(arch_name: str, suffix: str) -> WeightFormat | None:
    from parcae_runner.models.registry import get_architecture

    return next((fmt for fmt in get_architecture(arch_name).formats if suffix.endswith(fmt.suffix)), None)


def init_file_problem(source: str, arch_name: str) -> str | None:
    """Why the weight file ``source`` cannot initialise an ``arch_name`` run (None: it can)."""
    fmt = _declared(arch_name, source)
    if fmt is None:
        return f"arch={arch_name} reads no such file; its weight formats: {_describe(arch_name)}, or an exported folder"
    if not Path(source).is_file():
        return f"no such {fmt.name} {fmt.suffix} file"
    return None


def load_weight_file(model: nn.Module, source: str) -> bool:
    """Load ``source`` into ``model`` when it is a file in a format of the model's architecture; False when
    ``source`` is no weight file (an exported folder). ValueError when it cannot initialise the model."""
    if not is_weight_file(source):
        return False
    arch_name: str = cast(LanguageModel, model).hparams.name
    problem = init_file_problem(source, arch_name)
    if problem is not None:
        raise ValueError(problem)
    fmt = _declared(arch_name, source)
    assert fmt is not None
    fmt.import_into(model, Path(source))
    return True


def export_format(arch_name: str, name: str) -> WeightFormat:
    """The format ``name`` of ``arch_name``; ValueError naming the formats the architecture has."""
    from parcae_runner.models.registry import get_architecture

    for fmt in get_architecture(arch_name).formats:
        if fmt.name == name:
            return fmt
    raise ValueError(f"arch={arch_name} has no {name} format; its weight formats: {_describe(arch_name)}")
