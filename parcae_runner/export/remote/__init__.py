"""Modeling files shipped beside exported weights, for architectures no stock transformers class covers.

``remote/<arch>/`` holds ``configuration_<arch>.py`` and ``modeling_<arch>.py``: self-contained (torch and
transformers only, never parcae_runner), copied into the export folder so that
``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` loads it, as the published Levanter
Backpack does. Their parameter names are ours, so the weights are saved without renaming.
"""
