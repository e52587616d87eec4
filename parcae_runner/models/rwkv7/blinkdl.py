"""``rwkv7`` <-> the ``.pth`` checkpoints of BlinkDL's ``rwkv`` package (PyPI ``rwkv``, ``RWKV_V7_ON=1``).

The package's ``RWKV_x070`` (``rwkv/model.py``) loads ``<name>.pth``: a flat state dict with BlinkDL's training names
(``emb.weight``, ``blocks.0.ln0.*``, ``blocks.N.{ln1,ln2,att,ffn}.*``, ``ln_out.*``, ``head.weight``), ``nn.Linear``
weights as ``[out, in]`` (it transposes them on load), the ``[1, 1, C]`` vectors as they are (it squeezes them) and
``att.r_k`` as ``[H, N]``, from which it reads the head count and size. Our block-inner names are the package's, so
this is a rename of the outer names. Layer 0 has no value-residual ``v0/v1/v2`` here; the package ignores them there
(it overwrites them with empty tensors), and published checkpoints that carry them load with those dropped.
The package's LayerNorms use ``F.layer_norm``'s default eps (1e-5): only ``norm_eps=1e-5`` exports.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from parcae_runner.models.rwkv7.model import RWKV7HParams, RWKV7Model, lora_ranks

PACKAGE_EPS = 1e-5
# our name -> the package's, for the names outside the blocks
_OUTER = {"embed.weight": "emb.weight", "lm_head.weight": "head.weight"}
_LN0 = re.compile(r"^ln0\.")


def to_blinkdl_state_dict(model: RWKV7Model, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Our weights under the package's names, as contiguous CPU tensors of ``dtype`` (copies)."""
    if not isinstance(model, RWKV7Model):
        raise ValueError(f"the BlinkDL .pth format holds rwkv7 models, not {type(model).__name__}")
    if model.hparams.norm_eps != PACKAGE_EPS:
        raise ValueError(f"arch.norm_eps={model.hparams.norm_eps}: the rwkv package's LayerNorms use {PACKAGE_EPS}")
    out = {}
    for name, tensor in model.state_dict().items():
        key = _OUTER.get(name) or _LN0.sub("blocks.0.ln0.", name)
        out[key] = tensor.detach().to("cpu", dtype).contiguous().clone()
    if model.tied:
        out["head.weight"] = out["emb.weight"].clone()
    return out


def from_blinkdl_state_dict(state: dict[str, Tensor]) -> tuple[RWKV7HParams, dict[str, int], int, dict[str, Tensor]]:
    """A package state dict as ``(hparams, dims, vocab_size, our state dict)`` (fp32); ValueError if it is not one."""
    if "emb.weight" not in state or "blocks.0.att.r_k" not in state:
        raise ValueError("not an RWKV-7 checkpoint: no emb.weight / blocks.0.att.r_k")
    vocab, d_model = state["emb.weight"].shape
    n_heads, head_size = state["blocks.0.att.r_k"].shape
    n_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hparams = RWKV7HParams(
        ffn_mult=state["blocks.0.ffn.key.weight"].shape[0] // d_model,
        decay_lora=state["blocks.0.att.w1"].shape[1],
        iclr_lora=state["blocks.0.att.a1"].shape[1],
        value_lora=state[f"blocks.{min(1, n_layers - 1)}.att.v1"].shape[1] if n_layers > 1 else 0,
        gate_lora=state["blocks.0.att.g1"].shape[1],
    )
    dims = {"n_layers": n_layers, "d_model": d_model, "head_size": head_size}
    inverse = {v: k for k, v in _OUTER.items()}
    ours = {}
    for key, tensor in state.items():
        if re.match(r"^blocks\.0\.att\.v[012]$", key):
            continue
        name = inverse.get(key) or re.sub(r"^blocks\.0\.ln0\.", "ln0.", key)
        ours[name] = tensor.float()
    if n_heads * head_size != d_model:
        raise ValueError(f"att.r_k is [{n_heads}, {head_size}] but the embedding width is {d_model}")
    return hparams, dims, vocab, ours


def save_pth(model: RWKV7Model, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` as ``path`` (``.pth`` added if missing); the package loads it as ``RWKV(model=path[:-4])``."""
    path = Path(path)
    path = path if path.suffix == ".pth" else path.with_name(path.name + ".pth")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(to_blinkdl_state_dict(model, dtype), tmp)
    tmp.replace(path)
    return path


def load_pth(path: str | Path) -> RWKV7Model:
    """Build the ``rwkv7`` model a package ``.pth`` holds, with its weights."""
    hparams, dims, vocab, state = from_blinkdl_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    with torch.device("meta"):
        model = RWKV7Model(hparams, dims, vocab)
    model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    return model


def init_from_pth(model: RWKV7Model, path: str | Path) -> None:
    """Load a package ``.pth`` into ``model``; ValueError naming both shapes when they differ."""
    if not isinstance(model, RWKV7Model):
        raise ValueError(f"a BlinkDL .pth holds an rwkv7 model; this run builds {type(model).__name__}")
    hparams, dims, vocab, state = from_blinkdl_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    want = (dims, vocab, lora_ranks(hparams, dims["d_model"]), hparams.ffn_mult)
    have = (model.dims, model.vocab_size, lora_ranks(model.hparams, model.dims["d_model"]), model.hparams.ffn_mult)
    if want != have:
        raise ValueError(f"holds dims {dims}, vocab {vocab}, LoRA ranks {want[2]}; this run builds {have}")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
