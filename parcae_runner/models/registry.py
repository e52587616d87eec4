"""The architecture registry: the one place that maps an architecture name to its code.

Nothing else branches on architecture names: configs, training, export and reports ask this module
for the hyperparameter schema, the sizes, the model, the Hugging Face mapping and the citation of an
architecture. An architecture is one package ``parcae_runner/models/<name>/`` (``model.py``, ``sizes.py``,
optionally ``hf.py``) whose ``__init__`` calls ``register`` once; ``parcae_runner.models`` imports them all.

Architectures outside this package (a plugin, a test's toy model) are registered by naming their modules
in the environment variable ``PARCAE_EXTRA_ARCHS`` (comma-separated, e.g. ``PARCAE_EXTRA_ARCHS=my_pkg.arch``):
``parcae_runner.models`` imports them after the built-in ones, in every process (CLI, Slurm job, subprocess),
so they are known before the Hydra schemas are stored. No YAML is needed: ``arch=<name>`` composes the
hyperparameter dataclass's defaults, and every size in ``sizes`` is a ``size=<name>`` option
(``parcae_runner/config/store.py``). A ``launch_configs/arch/<name>.yaml`` is only for values other than the defaults.

A size is a named row of dims; a run's size config may override any of them (``size.d_model=192``):
``get_dims`` takes a size name or such a config, and ``size_errors`` says what is wrong with its overrides.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import nn

from parcae_runner.util.log import log

if TYPE_CHECKING:
    from parcae_runner.models.formats import WeightFormat
    from parcae_runner.models.remote import RemoteCode
    from parcae_runner.models.students import StudentRecipe


@dataclass(frozen=True)
class Architecture:
    name: str
    # dataclass of the hyperparameters settable from launch_configs/arch/<name>.yaml;
    # its first field is ``name: str = "<name>"`` and every field has a default
    hparams_cls: type
    # size name -> dims, e.g. {"debug": {"n_layers": 2, "d_model": 64, "n_heads": 4}}; every row has the same keys.
    # Each name is a `size=<name>` option and a run may override any dim (size.d_model=192). Names follow
    # CONTRIBUTING.md ("Naming a size"): the ladder by parameter count, `debug`, the papers' own names
    sizes: dict[str, dict[str, int]]
    # nn.Module built as model_cls(hparams, dims, vocab_size)
    model_cls: type
    description: str = ""
    # the module that maps the model to and from a transformers class (None: no HF export). It provides
    # ``CONTEXT_KEY``, ``hf_name(our_param_name)``, ``to_hf_config(model, **overrides)``,
    # ``to_hf_state_dict(model)`` and ``from_hf_config(config) -> (hparams, dims)``; see ``models.hf``
    hf: ModuleType | None = None
    # the HF ``model_type`` that ``hf`` exports to ("gpt_neox", "mamba", ...); set exactly when ``hf`` is
    hf_model_type: str | None = None
    # BibTeX of the paper behind the architecture, for the model card (None: the card cites none)
    citation: str | None = None
    # check(hparams, dims, seq_len) -> (errors, warnings): errors are (key, value, what is allowed), run by the
    # config validation before anything is written (bad input, exit 2); warnings are sentences it logs
    check: Callable[..., tuple[list, list[str]]] | None = None
    # size -> (published parameter count, the vocabulary it was counted at): the paper's size table, checked by
    # tests/models/test_architectures.py instead of the ladder
    published: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    # sizes that ``plan`` estimates but ``train`` refuses (too large for this project's studies, e.g. LLaMA 7B)
    plan_only: frozenset[str] = frozenset()
    # weight files other than HF folders that ``train.init_from`` reads and ``export --format`` writes
    # (see ``models.formats``), e.g. RWKV-7's BlinkDL ``.pth``
    formats: tuple[WeightFormat, ...] = ()
    # how to make a distillation student of this architecture from a transformers decoder (see ``models.students``)
    student: StudentRecipe | None = None
    # the names of its trust-remote-code export, for an architecture no stock transformers class covers (None: none;
    # see ``models.remote``)
    remote_code: RemoteCode | None = None
    # passes(hparams) -> {name of a block list: how many times each of its blocks runs with gradients in one training
    # forward}, for the memory plan's activations (Parcae's core: mean_backprop_depth). None: every block runs once
    activation_passes: Callable[[Any], Mapping[str, int]] | None = None
    # the block classes FSDP shards one by one (train.strategy=fsdp, train/sharding.py); the rest of the model
    # (embeddings, final norm, head) is the root unit. Empty: the architecture cannot be sharded (fsdp refused)
    shard_units: tuple[type, ...] = ()


class UnknownArchitecture(KeyError):
    # KeyError's str() is the repr of its argument; keep the message readable
    def __str__(self) -> str:
        return str(self.args[0])


class UnknownSize(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


ARCHITECTURES: dict[str, Architecture] = {}


def _check(arch: Architecture) -> None:
    for attr in ("description", "citation", "hf_model_type"):
        value = getattr(arch, attr)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"architecture {arch.name!r}: {attr} must be a string, not {type(value).__name__}")
    if not dataclasses.is_dataclass(arch.hparams_cls):
        raise TypeError(f"architecture {arch.name!r}: hparams_cls must be a dataclass")
    fields = dataclasses.fields(arch.hparams_cls)
    if not fields or fields[0].name != "name" or fields[0].default != arch.name:
        raise TypeError(f"architecture {arch.name!r}: the first hparams field must be `name: str = {arch.name!r}`")
    no_default = [
        f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if no_default:
        raise TypeError(f"architecture {arch.name!r}: hparams fields without a default: {', '.join(no_default)}")
    if not arch.sizes:
        raise TypeError(f"architecture {arch.name!r} has no sizes")
    if not (isinstance(arch.model_cls, type) and issubclass(arch.model_cls, nn.Module)):
        raise TypeError(f"architecture {arch.name!r}: model_cls must be an nn.Module subclass")
    if (arch.hf is None) != (arch.hf_model_type is None):
        raise TypeError(f"architecture {arch.name!r}: set hf and hf_model_type together")
    format_names = [fmt.name for fmt in arch.formats]
    if len(format_names) != len(set(format_names)):
        raise TypeError(f"architecture {arch.name!r}: two weight formats share a name: {', '.join(format_names)}")


def register(arch: Architecture) -> Architecture:
    """Add ``arch`` to ``ARCHITECTURES``; a second, different architecture under the same name is an error."""
    _check(arch)
    old = ARCHITECTURES.get(arch.name)
    # re-registering the same class (e.g. a module reload) is harmless; a name clash is not
    if old is not None and (old.model_cls.__module__, old.model_cls.__qualname__) != (
        arch.model_cls.__module__,
        arch.model_cls.__qualname__,
    ):
        raise ValueError(f"architecture {arch.name!r} is already registered by {old.model_cls.__module__}")
    ARCHITECTURES[arch.name] = arch
    return arch


EXTRA_ARCHS_ENV = "PARCAE_EXTRA_ARCHS"

# old name -> (current name, deprecation note): a renamed architecture keeps loading under its old name
ALIASES: dict[str, tuple[str, str]] = {}


def alias(old: str, new: str, note: str) -> None:
    """Make ``old`` a deprecated alias of the registered architecture ``new``."""
    if new not in ARCHITECTURES or old in ARCHITECTURES:
        raise ValueError(f"alias {old!r} -> {new!r}: {new!r} must be registered and {old!r} must not")
    ALIASES[old] = (new, note)


def canonical_name(name: str) -> str:
    """``name``, or the architecture a deprecated alias stands for (logging the deprecation note)."""
    if isinstance(name, str) and name in ALIASES and name not in ARCHITECTURES:
        new, note = ALIASES[name]
        log(f"warning: {note}")
        return new
    return name


def dims_table(keys: tuple[str, ...], rows: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, int]]:
    """A ``sizes`` table from one tuple per size: ``dims_table(("n_layers", "d_model"), {"debug": (2, 64)})``."""
    return {size: dict(zip(keys, values, strict=True)) for size, values in rows.items()}


def import_extra_architectures() -> list[str]:
    """Import the modules named in ``$PARCAE_EXTRA_ARCHS`` (comma-separated); each registers its architectures."""
    names = [n.strip() for n in os.environ.get(EXTRA_ARCHS_ENV, "").split(",") if n.strip()]
    for name in names:
        importlib.import_module(name)
    return names


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[canonical_name(name)]
    except (KeyError, TypeError):
        allowed = ", ".join(sorted(ARCHITECTURES)) or "(none registered)"
        raise UnknownArchitecture(f"unknown architecture arch.name={name!r}; allowed: {allowed}") from None


# a size name ("debug"), or a run's size config: its name plus the dims it overrides ({"name": "debug", "d_model": 96})
SizeSpec = str | Mapping[str, Any]


def split_size(size: SizeSpec) -> tuple[str | None, dict[str, Any]]:
    """(size name, the dims it overrides) of a size name or size config (name None: the config has none)."""
    if isinstance(size, str):
        return size, {}
    values = dict(size.items())
    return values.pop("name", None), values


def size_errors(arch: Architecture, size: SizeSpec) -> list[tuple[str, Any, str]]:
    """What is wrong with the dims ``size`` overrides, as (key, value, what is allowed); [] when nothing is.

    Every override must be one of the size's dims and a positive integer, and the heads must still split
    ``d_model`` (``n_heads`` or ``head_size``), as ``n_kv_heads`` must ``n_heads``. Constraints that belong to one
    architecture are its ``check``. An unknown size name is ``get_dims``'s to report, not this function's.
    """
    name, overrides = split_size(size)
    base = arch.sizes.get(name) if isinstance(name, str) else None
    if base is None:
        return []
    errors = []
    for key, value in overrides.items():
        if key not in base:
            errors.append((f"size.{key}", value, f"not a dimension of {arch.name}; its dimensions: {', '.join(base)}"))
        # bool is an int to Python, but size.n_layers=true is a mistake
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            errors.append((f"size.{key}", value, "must be a positive integer"))
    if errors:
        return errors
    dims = {**base, **overrides}
    for whole, part in (("d_model", "n_heads"), ("d_model", "head_size"), ("n_heads", "n_kv_heads")):
        if whole not in dims or part not in dims or dims[whole] % dims[part] == 0:
            continue
        # name the key the user set (the whole when both, or neither: a registry row that does not divide)
        if part in overrides and whole not in overrides:
            errors.append((f"size.{part}", dims[part], f"a divisor of size.{whole}={dims[whole]}"))
        else:
            errors.append((f"size.{whole}", dims[whole], f"a multiple of size.{part}={dims[part]}"))
    return errors


def get_dims(arch: Architecture, size: SizeSpec) -> dict[str, int]:
    """The dims of ``size`` for ``arch``: the registry's row for its name, with the dims a size config overrides.

    Raises ``UnknownSize`` listing the sizes ``arch`` has, or ``ValueError`` naming a bad override.
    """
    name, overrides = split_size(size)
    row = arch.sizes.get(name) if isinstance(name, str) else None
    if row is None:
        raise UnknownSize(f"unknown size={name!r} for architecture {arch.name!r}; its sizes: {', '.join(arch.sizes)}")
    dims = dict(row)
    errors = size_errors(arch, size)
    if errors:
        raise ValueError("; ".join(f"{key}={value}: {allowed}" for key, value, allowed in errors))
    return {**dims, **overrides}


def make_hparams(arch_cfg: Mapping[str, Any] | Any) -> tuple[Architecture, Any]:
    """Validate ``arch_cfg`` (a mapping or dataclass with ``name`` and hyperparameters) into ``hparams_cls``."""
    if dataclasses.is_dataclass(arch_cfg) and not isinstance(arch_cfg, type):
        values = {f.name: getattr(arch_cfg, f.name) for f in dataclasses.fields(arch_cfg)}
    elif isinstance(arch_cfg, Mapping):
        values = dict(arch_cfg.items())
    else:
        raise TypeError(f"arch config must be a mapping or a dataclass, not {type(arch_cfg).__name__}")
    if "name" not in values:
        raise ValueError("arch.name is missing: the arch config must say which architecture to build")
    arch = get_architecture(values["name"])
    values["name"] = arch.name
    if isinstance(arch_cfg, arch.hparams_cls):
        return arch, arch_cfg
    allowed = [f.name for f in dataclasses.fields(arch.hparams_cls)]
    unknown = [k for k in values if k not in allowed]
    if unknown:
        raise ValueError(
            f"{', '.join(f'arch.{k}' for k in unknown)}: not a hyperparameter of architecture {arch.name!r}; "
            f"allowed keys: {', '.join(allowed)}"
        )
    return arch, arch.hparams_cls(**values)


def build_model(arch_cfg: Mapping[str, Any] | Any, size: SizeSpec, vocab_size: int) -> nn.Module:
    """Build the model that ``arch_cfg`` names at ``size`` (a size name, or a run's size config with the dims it
    overrides), with freshly initialised weights.

    Under ``with torch.device("meta"):`` this allocates nothing (count parameters, plan sharding, ...).
    """
    arch, hparams = make_hparams(arch_cfg)
    dims = get_dims(arch, size)
    return arch.model_cls(hparams, dims, vocab_size)


def count_parameters(model: nn.Module, non_embedding: bool = False) -> int:
    """Number of parameters, shared ones counted once.

    ``non_embedding=True`` leaves out the token embeddings (every ``nn.Embedding``) and the output head
    (``model.lm_head``), as in the Kaplan et al. and Pythia non-embedding counts.
    """
    params = {id(p): p for p in model.parameters()}
    if non_embedding:
        excluded: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        head = getattr(model, "lm_head", None)
        if isinstance(head, nn.Module):
            excluded.append(head)
        for module in excluded:
            for p in module.parameters():
                params.pop(id(p), None)
    return sum(p.numel() for p in params.values())
