"""Register the schemas in Hydra's ConfigStore.

The primary schema is ``run_schema``; each architecture's hyperparameter dataclass is
stored as ``arch/<name>_schema`` straight from the model registry, so adding an
architecture never means editing this file.
"""

from __future__ import annotations

from functools import cache

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from parcae_runner.config.schema import RunConfig


@cache
def register_configs() -> None:
    from parcae_runner.models import ARCHITECTURES

    # ${ceil_div:a,b}: e.g. arch.mean_backprop_depth=${ceil_div:${arch.mean_recurrence},2} in a sweep
    OmegaConf.register_new_resolver("ceil_div", lambda a, b: -(-int(a) // int(b)), replace=True)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for name, arch in ARCHITECTURES.items():
        cs.store(group="arch", name=f"{name}_schema", node=arch.hparams_cls)
