"""Weights of the transformer family under a transformers class's names, both ways.

Each named architecture's ``hf.py`` declares a ``Target``: renames (our regex -> HF name), which HF weights
are stored transposed (GPT-2's ``Conv1D``) and how q, k, v fuse into one HF tensor (GPT-2's ``c_attn`` is
``[q; k; v]``, BLOOM's ``query_key_value`` is per head ``[q_h, k_h, v_h]``; LLaMA and Mistral keep them apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from parcae_runner.models.renames import rename
from parcae_runner.models.transformer.config import TransformerHParams, kv_heads
from parcae_runner.models.transformer.model import TransformerModel

QKV = re.compile(r"^blocks\.(\d+)\.attn\.([qkv])\.(weight|bias)$")


@dataclass(frozen=True)
class Target:
    """One transformers class: ``name`` (for messages), renames, transposed HF names, fused q/k/v."""

    name: str
    renames: list[tuple[str, str]]
    # regex on HF names whose tensors are stored [in, out] (GPT-2 Conv1D)
    transposed: str | None = None
    # HF name of the fused q/k/v of layer {i}, kind {kind} (weight/bias); None: separate q, k, v renames
    fused_qkv: str | None = None
    # fused per head [q_h, k_h, v_h] (BLOOM, GPT-NeoX) rather than [q; k; v] (GPT-2)
    per_head: bool = False

    def hf_name(self, ours: str) -> str:
        """Our parameter name -> the HF one (q, k and v name the fused tensor they go into)."""
        m = QKV.match(ours)
        if m and self.fused_qkv:
            return self.fused_qkv.format(i=m[1], kind=m[3])
        return rename(ours, self.renames, self.name)

    def _is_transposed(self, hf: str) -> bool:
        return bool(self.transposed and re.search(self.transposed, hf))

    def _fuse(self, q: Tensor, k: Tensor, v: Tensor, n_heads: int) -> Tensor:
        """q, k, v ``[H*D(, C)]`` -> ``[3*H*D(, C)]``."""
        if not self.per_head:
            return torch.cat((q, k, v), dim=0)
        tail = q.shape[1:]
        stacked = torch.stack([t.reshape(n_heads, -1, *tail) for t in (q, k, v)], dim=1)  # [H, 3, D(, C)]
        return stacked.reshape(-1, *tail)

    def _split(self, fused: Tensor, n_heads: int) -> tuple[Tensor, Tensor, Tensor]:
        if not self.per_head:
            q, k, v = fused.chunk(3, dim=0)
            return q, k, v
        tail = fused.shape[1:]
        per_head = fused.reshape(n_heads, 3, -1, *tail)  # [H, 3, D(, C)]
        q, k, v = (per_head[:, j].reshape(-1, *tail) for j in range(3))
        return q, k, v

    def state_dict(self, model: TransformerModel) -> dict[str, Tensor]:
        """``model``'s weights under HF names (fused and transposed tensors are copies, the rest views)."""
        ours = model.state_dict()
        out: dict[str, Tensor] = {}
        for name, tensor in ours.items():
            m = QKV.match(name)
            if m and self.fused_qkv:
                if m[2] == "q":
                    q, k, v = (ours[f"blocks.{m[1]}.attn.{x}.{m[3]}"] for x in "qkv")
                    out[self.hf_name(name)] = self._fuse(q, k, v, model.dims["n_heads"])
                continue
            out[self.hf_name(name)] = tensor
        return {k: (v.t().contiguous() if self._is_transposed(k) else v) for k, v in out.items()}

    def from_hf_state_dict(self, hf_state: dict[str, Tensor], model: TransformerModel) -> dict[str, Tensor]:
        """Our state dict from an HF one; every HF weight must find a place and every one of ours a value."""
        names = {ours: self.hf_name(ours) for ours in model.state_dict()}
        missing = [f"{o} ({h})" for o, h in names.items() if h not in hf_state]
        unused = sorted(set(hf_state) - set(names.values()))
        if missing or unused:
            raise KeyError(
                f"HF checkpoint does not match our {model.hparams.name}: missing {', '.join(missing[:5]) or 'none'};"
                f" unused {', '.join(unused[:5]) or 'none'}"
            )
        out: dict[str, Tensor] = {}
        for ours, hf in names.items():
            tensor = hf_state[hf].detach()
            tensor = tensor.t().contiguous() if self._is_transposed(hf) else tensor
            m = QKV.match(ours)
            if m and self.fused_qkv:
                tensor = dict(zip("qkv", self._split(tensor, model.dims["n_heads"]), strict=True))[m[2]]
            out[ours] = tensor
        return out


def require(model: Any, target: str, wanted: dict[str, Any]) -> TransformerHParams:
    """``model.hparams``, after checking ``wanted`` (hparam -> value or tuple of allowed values):
    ValueError naming the first hyperparameter the HF class cannot express."""
    if not isinstance(model, TransformerModel):
        raise TypeError(f"{target} export takes a TransformerModel, not {type(model).__name__}")
    hp = model.hparams
    values = {
        **{f: getattr(hp, f) for f in wanted if f != "mha"},
        "mha": kv_heads(hp, model.dims) == model.dims["n_heads"],
    }
    for key, want in wanted.items():
        allowed = want if isinstance(want, tuple) else (want,)
        if values[key] not in allowed:
            raise ValueError(
                f"arch.{key}={values[key]!r}: {target} cannot express it (it needs {' or '.join(map(repr, allowed))})"
            )
    return hp


def common_dims(n_layers: int, d_model: int, n_heads: int, n_kv_heads: int | None = None) -> dict[str, int]:
    dims = {"n_layers": int(n_layers), "d_model": int(d_model), "n_heads": int(n_heads)}
    if n_kv_heads is not None and int(n_kv_heads) != int(n_heads):
        dims["n_kv_heads"] = int(n_kv_heads)
    return dims
