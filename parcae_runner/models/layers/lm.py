"""The frame every architecture's model shares: ``input_ids [B, T] -> logits [B, T, V]`` through a token
embedding ``embed`` and an output head ``lm_head``, tied when ``hparams.tie_embeddings``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


class LanguageModel(nn.Module):
    """Keeps ``hparams``, ``dims`` and ``vocab_size`` and builds ``embed`` (``vocab x d_model``) first, so every
    model's parameters start with it; the subclass builds its body and then, last, ``self.lm_head = self.head()``.
    """

    def __init__(self, hparams: Any, dims: Mapping[str, int], vocab_size: int) -> None:
        super().__init__()
        self.hparams = hparams
        self.dims = dict(dims)
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, self.dims["d_model"])

    @property
    def tied(self) -> bool:
        return bool(getattr(self.hparams, "tie_embeddings", False))

    def head(self) -> nn.Linear:
        """The output head ``d_model -> vocab``, no bias (``init_weights`` ties it to ``embed`` if asked)."""
        return nn.Linear(self.dims["d_model"], self.vocab_size, bias=False)

    def finish_init(self) -> None:
        """Build ``lm_head`` (after every other module, so the parameter order is embed, body, head), tie it if
        asked and initialise every weight. The subclass's ``__init__`` ends with this."""
        self.lm_head = self.head()
        self.tie_head()
        self.init_weights()

    def init_weights(self) -> None:
        """(Re)initialise every weight; call after ``to_empty`` when the model was built on the meta device."""
        raise NotImplementedError

    def tie_head(self) -> None:
        """Share ``embed``'s weight with ``lm_head`` when tied; again after ``to_empty``, which gives tied names
        separate tensors."""
        if self.tied:
            self.lm_head.weight = self.embed.weight
