"""``parcae``: an lm-eval-harness model for any architecture this tool trains, read from a run directory.

    parcae-runner lm-eval --model parcae --model_args run=results/parc-demo/pythia-debug-s0,checkpoint=150 \\
        --tasks lambada_embedded

Model arguments: ``run`` (a run directory), ``checkpoint`` (a step; default the newest), ``recurrence``
(looped models only: the number of core iterations, default the model's eval depth), ``batch_size``
(default 16), ``max_length`` (default the run's ``data.seq_len``), ``device`` (default ``cuda`` when
available), ``dtype`` (``float32``, ``bfloat16`` or ``float16``; default: the checkpoint's float32).

Scoring follows lm-eval's ``hf`` model exactly (``TemplateLM`` encodes the context/continuation pairs;
inputs longer than ``max_length`` are cut from the left; batches are right-padded, which a causal model
ignores), so the log-likelihoods of an exported checkpoint agree with ``--model hf`` on the export.
``generate_until`` decodes greedily (or samples with ``do_sample``/``temperature``), batched.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval's own models, registered before ours: see the class)
import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from torch import nn
from tqdm import tqdm

from parcae_runner.data.pretrained import separator_of
from parcae_runner.eval.lm_eval_cli import MODEL_NAME
from parcae_runner.runs import RunRecord

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_GEN_TOKS = 256


def _as_int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"parcae: {name}={value!r} is not an integer") from None


def takes_recurrence(model: nn.Module) -> bool:
    """Looped models take the number of core iterations as ``forward(..., num_steps=R)``."""
    return "num_steps" in inspect.signature(model.forward).parameters


def run_data(record: RunRecord) -> Any:
    """The prepared data (tokenizer, held-out split) a run trained on, from ``run.json``'s record."""
    from parcae_runner.data import DataError, load_prepared

    # a missing "dir" (None) is the TypeError below
    folder: Any = record.data_info.get("dir")
    try:
        return load_prepared(folder)
    except (TypeError, DataError) as exc:
        raise DataError(
            f"the run's prepared data is not on this machine ({exc}); running the run's training config once "
            f"prepares it (in data.cache_dir), or copy {folder} here from the machine that trained it"
        ) from None


def load_run_model(run: str | Path, checkpoint: int | None = None) -> tuple[nn.Module, Any, int, int]:
    """``(model, tokenizer, max_length, step)`` of a run directory's checkpoint (newest when ``None``)."""
    from parcae_runner.runs.checkpoints import checkpoint_path, load_checkpoint_model
    from parcae_runner.runs.layout import open_run

    rd, cfg, record = open_run(run)
    step, path = checkpoint_path(rd, checkpoint)
    tokenizer = run_data(record).load_tokenizer()
    return load_checkpoint_model(rd, cfg, record, path), tokenizer, int(cfg.data.seq_len), step


# importing this module registers the model, as lm-eval's own models do (after them: lm-eval adds its own only
# while its registry is empty); `parcae-runner lm-eval` registers it lazily instead
@register_model(MODEL_NAME)
class ParcaeLM(TemplateLM):
    """An lm-eval ``LM`` around one of our models and its run's tokenizer (see the module docstring)."""

    def __init__(
        self,
        run: str | None = None,
        checkpoint: int | str | None = None,
        recurrence: int | str | None = None,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        max_length: int | str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        *,
        model: nn.Module | None = None,
        tokenizer: Any = None,
        **unused: Any,
    ) -> None:
        super().__init__()
        default_length: int | None
        self.step: int | None
        if model is None:
            if not run:
                raise ValueError("parcae: model_args must name a run directory: run=<results/sweep/run>")
            ckpt = None if checkpoint in (None, "", "latest") else _as_int(checkpoint, "checkpoint")
            model, tokenizer, default_length, self.step = load_run_model(run, ckpt)
        else:
            default_length, self.step = _as_int(max_length, "max_length"), _as_int(checkpoint, "checkpoint")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"parcae: dtype={dtype!r}; choose one of {', '.join(DTYPES)}")
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            # lm_eval's CLI asks for cuda by default; its hf model also falls back
            warnings.warn(f"parcae: device={device} but CUDA is not available; using cpu", stacklevel=2)
            device = "cpu"
        self.device_name = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # no dtype: the weights' own (a checkpoint loads in float32; a live model keeps its precision)
        self.model = model.to(device=self.device_name, dtype=DTYPES.get(dtype) if dtype is not None else None).eval()
        self.tokenizer = tokenizer
        self._eot_id = separator_of(tokenizer)
        self.run = run
        known_length = _as_int(max_length, "max_length") or default_length
        if not known_length:
            raise ValueError("parcae: max_length is unknown; pass max_length=<tokens>")
        self._max_length = known_length
        self.batch_size = _as_int(batch_size, "batch_size") or DEFAULT_BATCH_SIZE
        self.recurrence = _as_int(recurrence, "recurrence")
        self.forward_kwargs: dict[str, Any] = {}
        if self.recurrence is not None:
            if not takes_recurrence(self.model):
                raise ValueError(
                    f"parcae: recurrence={self.recurrence} applies to looped models only, not {type(model).__name__}"
                )
            self.forward_kwargs["num_steps"] = self.recurrence

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> ParcaeLM:
        from lm_eval.utils import simple_parse_args_string

        args = simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        # lm-eval's own --batch_size/--device win over defaults, not over model_args
        return cls(**{**{k: v for k, v in extra.items() if k in ("batch_size", "device")}, **args})

    # -- what TemplateLM needs
    @property
    def eot_token_id(self) -> int:
        return self._eot_id

    @property
    def max_length(self) -> int:
        return self._max_length

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        # our tokenizer adds no special tokens; documents start after an <|endoftext|> in training, and
        # TemplateLM puts one before an empty context, as lm-eval's hf model does
        return self.tokenizer.encode(string, add_special_tokens=False).ids

    def tok_decode(self, tokens: Sequence[int], **kwargs: Any) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    def get_model_info(self) -> dict[str, Any]:
        return {
            "model": MODEL_NAME,
            "run": str(self.run) if self.run else None,
            "checkpoint": self.step,
            "recurrence": self.recurrence,
            "architecture": type(self.model).__name__,
        }

    @torch.no_grad()
    def _logits(self, batch: list[list[int]]) -> torch.Tensor:
        """Log-probabilities ``[B, T, V]`` (float32) of right-padded token lists."""
        width = max(len(t) for t in batch)
        inp = torch.zeros(len(batch), width, dtype=torch.long)
        for i, toks in enumerate(batch):
            inp[i, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        logits = self.model(inp.to(self.device_name), **self.forward_kwargs)
        return F.log_softmax(logits.float(), dim=-1).cpu()

    def _batches(self, items: list[Any], key: Callable[[Any], int], desc: str, disable: bool) -> Iterable[list[int]]:
        """Indices of ``items`` in batches, longest first (a batch's padding is then small and the
        progress bar's time estimate an over-estimate), each item exactly once."""
        order = sorted(range(len(items)), key=lambda i: -key(items[i]))
        bar = tqdm(total=len(items), desc=desc, disable=disable)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            yield chunk
            bar.update(len(chunk))
        bar.close()

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        results: list[tuple[float, bool] | None] = [None] * len(requests)

        def length(req: tuple[Any, list[int], list[int]]) -> int:
            return len(req[1]) + len(req[2])

        for chunk in self._batches(requests, length, "parcae loglikelihood", disable_tqdm):
            inputs, conts = [], []
            for i in chunk:
                _, context, continuation = requests[i]
                if not continuation or len(continuation) > self.max_length:
                    raise ValueError(
                        f"parcae: a continuation of {len(continuation)} tokens cannot be scored "
                        f"with max_length={self.max_length}"
                    )
                # the last token is only a target; cut from the left to max_length inputs
                inputs.append((context + continuation)[-(self.max_length + 1) :][:-1])
                conts.append(continuation)
            logprobs = self._logits(inputs)
            for row, i in enumerate(chunk):
                cont, n = conts[row], len(inputs[row])
                lp = logprobs[row, n - len(cont) : n]  # [len(cont), V]
                target = torch.tensor(cont, dtype=torch.long)
                greedy = bool((lp.argmax(dim=-1) == target).all())
                answer = (float(lp.gather(-1, target[:, None]).sum()), greedy)
                results[i] = answer
                key = requests[i][0]
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, answer)
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Total log-likelihood of each string, in disjoint windows of ``max_length`` tokens (each
        conditioned on up to ``max_length`` tokens before it), as lm-eval's hf model computes it."""
        windows: list[tuple[None, list[int], list[int]]] = []
        owner: list[int] = []
        for r, (string,) in enumerate(req.args for req in requests):
            rolling = get_rolling_token_windows(
                token_list=self.tok_encode(string),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            for context, continuation in map(make_disjoint_window, rolling):
                windows.append((None, context, continuation))
                owner.append(r)
        totals = [0.0] * len(requests)
        for r, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm), strict=True):
            totals[r] += logprob
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    @torch.no_grad()
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, with ``do_sample``) continuations, stopped at the first of ``until``
        or ``<|endoftext|>``, at most ``max_gen_toks`` tokens; requests with equal settings are batched."""
        out: list[str | None] = [None] * len(requests)
        args = [req.args for req in requests]
        for chunk in self._batches(args, lambda a: len(self.tok_encode(a[0])), "parcae generate", disable_tqdm):
            groups: dict[str, list[int]] = {}
            for i in chunk:
                groups.setdefault(repr(sorted(args[i][1].items())), []).append(i)
            for members in groups.values():
                texts = self._generate([args[i][0] for i in members], dict(args[members[0]][1]))
                for i, text in zip(members, texts, strict=True):
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", args[i], text)
        return out  # type: ignore[return-value]

    def _generate(self, contexts: list[str], gen_kwargs: dict[str, Any]) -> list[str]:
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = int(gen_kwargs.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
        temperature = float(gen_kwargs.pop("temperature", 0.0) or 0.0)
        sample = bool(gen_kwargs.pop("do_sample", False)) and temperature > 0
        seqs = [self.tok_encode(c) or [self.prefix_token_id] for c in contexts]
        starts = [len(s) for s in seqs]
        done = [False] * len(seqs)
        for _ in range(max_new):
            live = [i for i, d in enumerate(done) if not d]
            if not live:
                break
            windows = [seqs[i][-self.max_length :] for i in live]
            logprobs = self._logits(windows)
            last = torch.stack([logprobs[row, len(w) - 1] for row, w in enumerate(windows)])  # [live, V]
            if sample:
                nxt = torch.multinomial(torch.softmax(last / temperature, dim=-1), 1)[:, 0]
            else:
                nxt = last.argmax(dim=-1)
            for i, tok in zip(live, nxt.tolist(), strict=True):
                seqs[i].append(tok)
                text = self.tok_decode(seqs[i][starts[i] :])
                if tok == self.eot_token_id or any(stop in text for stop in until):
                    done[i] = True
        texts = []
        for i, seq in enumerate(seqs):
            gen = [t for t in seq[starts[i] :] if t != self.eot_token_id]
            text = self.tok_decode(gen)
            for stop in until:
                text = text.split(stop)[0] if stop else text
            texts.append(text)
        return texts
