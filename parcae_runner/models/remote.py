"""How an architecture without a stock transformers class ships: as trust-remote-code (its spec's ``remote_code``).

The export (``parcae_runner.export.remote_code``) writes the architecture's own model module from
``models/<arch>/`` and what it imports into the folder, with a generated ``configuration_<arch>.py`` and
``modeling_<arch>.py`` that wrap it for ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``;
the spec names only what transformers sees.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteCode:
    # the config's ``model_type``, e.g. "parcae_backpack"
    model_type: str
    # the transformers classes are ``<class_prefix>Config`` and ``<class_prefix>ForCausalLM``
    class_prefix: str
