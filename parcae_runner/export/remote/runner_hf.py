"""transformers classes around a parcae-runner model shipped beside its weights (``trust_remote_code=True``).

An export folder holds this file, the package's own model module (``models/<arch>/model.py`` and the modules it
imports, bundled flat beside it) and a generated ``modeling_<arch>.py`` that subclasses :class:`RunnerForCausalLM`
with the model's classes. The config holds the model's ``hparams`` and ``dims`` as the package builds it:
``model_cls(hparams_cls(**config.hparams), config.dims, config.vocab_size)``. torch + transformers only.
"""

import inspect

import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput


class RunnerConfig(PretrainedConfig):
    def __init__(
        self,
        vocab_size: int = 0,
        dims: dict | None = None,
        hparams: dict | None = None,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.dims = dict(dims or {})
        self.hparams = dict(hparams or {})
        self.initializer_range = initializer_range
        kwargs.setdefault("use_cache", False)
        # transformers wraps PretrainedConfig's dataclass __init__ to take extra fields; its signature does not show it
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)  # type: ignore[call-arg]


class RunnerForCausalLM(PreTrainedModel, GenerationMixin):
    """``input_ids [B, T] -> logits [B, T, V]`` through the package's model, held as ``self.model``."""

    base_model_prefix = "model"
    # set by the generated subclass: the package's hyperparameter dataclass and model class
    hparams_cls: type
    model_cls: type
    # tied only when config.tie_word_embeddings (then the file holds model.embed.weight alone)
    _tied_weights_keys = {"model.lm_head.weight": "model.embed.weight"}

    def __init__(self, config: RunnerConfig) -> None:
        super().__init__(config)
        self.model = self.model_cls(self.hparams_cls(**config.hparams), config.dims, config.vocab_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Nothing: the package's model initialised itself, and the checkpoint holds every weight."""

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.lm_head

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> CausalLMOutput:
        # the model's own options (e.g. a looped model's num_steps) pass through; generate's bookkeeping does not
        accepted = inspect.signature(self.model.forward).parameters
        logits = self.model(input_ids, **{k: v for k, v in kwargs.items() if k in accepted})
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        # no recurrent-state or key/value cache: every step reads the whole prefix
        return {"input_ids": input_ids}
