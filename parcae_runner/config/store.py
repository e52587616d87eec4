"""Register the schemas in Hydra's ConfigStore.

The primary schema is ``run_schema``; each architecture's hyperparameter dataclass is
stored as ``arch/<name>_schema`` and each of its sizes as ``size/<name>``, straight from the
model registry, so adding an architecture or a size never means editing this file or a YAML.
"""

from __future__ import annotations

from functools import cache

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from parcae_runner.config.schema import RunConfig, SizeConfig


def size_names() -> list[str]:
    """Every size name some registered architecture has, sorted: the options of the ``size`` group."""
    from parcae_runner.models import registry

    return sorted({size for arch in registry.ARCHITECTURES.values() for size in arch.sizes})


def size_node(name: str) -> DictConfig:
    """The ``size=<name>`` option: ``{name: <name>}`` and nothing else, so ``show`` prints only what the user set.

    Why the node is open (not struct): a run may override any dim of its size (``size.d_model=192``, also in a
    preset or a sweep), and which dims exist depends on the architecture, which the size schema cannot know.
    Hydra takes the flag of the chosen node over its own struct mode, so such keys compose like any other override;
    ``compose`` then checks them against the architecture's dims (``validate.size_errors``)."""
    node = OmegaConf.structured(SizeConfig(name=name))
    OmegaConf.set_struct(node, False)
    return node


def register_configs() -> None:
    """Store the schemas and the registry's options (again when an architecture was registered since)."""
    from parcae_runner.models import registry

    _store(tuple(registry.ARCHITECTURES))


@cache
def _store(architectures: tuple[str, ...]) -> None:
    from parcae_runner.models import registry

    # ${ceil_div:a,b}: e.g. arch.mean_backprop_depth=${ceil_div:${arch.mean_recurrence},2} in a sweep
    OmegaConf.register_new_resolver("ceil_div", lambda a, b: -(-int(a) // int(b)), replace=True)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for name in architectures:
        cs.store(group="arch", name=f"{name}_schema", node=registry.ARCHITECTURES[name].hparams_cls)
    for size in size_names():
        cs.store(group="size", name=size, node=size_node(size))
