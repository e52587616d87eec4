"""``parcae-runner distill``: bad input exits 2 and writes nothing; a short run writes a normal run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from parcae_runner.cli import main
from parcae_runner.distill.data import _heldout as _is_heldout
from parcae_runner.distill.sweep import expand
from parcae_runner.runs import open_run

transformers = pytest.importorskip("transformers")


def save_teacher(folder: Path, **overrides) -> Path:
    torch.manual_seed(0)
    values = dict(
        vocab_size=600, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
    ) | overrides  # fmt: skip
    transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**values)).save_pretrained(folder)
    return folder


def distill_args(tmp_path: Path, data_cache: Path, *extra: str) -> list[str]:
    return [
        "distill",
        f"results_dir={tmp_path / 'results'}",
        f"data.cache_dir={data_cache}",
        "data.vocab_size=512",
        "data.seq_len=32",
        *extra,
    ]


def bad_gqa_folder(folder: Path) -> Path:
    """A Qwen2 config.json whose 6 query heads do not split over 4 key/value heads (written by hand)."""
    save_teacher(folder)
    config = json.loads((folder / "config.json").read_text())
    config |= {"num_attention_heads": 6, "num_key_value_heads": 4, "head_dim": 8}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not-decoder",
        "heads",
        "student-layers",
        "student-width",
        "stage2-alone",
        "stage2-unfinished",
        "run-without-export",
        "run-exporting-gpt-neox",
    ],
)
def test_bad_input_exits_2_and_writes_nothing(case, tmp_path, data_cache, capsys):
    teachers = tmp_path / "teachers"
    good = teachers / "good"
    if case not in ("missing", "not-decoder", "heads"):
        save_teacher(good)
    extra = {
        "missing": [f"teacher={teachers / 'nope'}"],
        "student-layers": [f"teacher={good}", "student_layers=3"],
        "student-width": [f"teacher={good}", "student_d_model=64"],
        "stage2-alone": [f"teacher={good}", "stage=2"],
        "stage2-unfinished": [f"teacher={good}", "stage=2", f"stage1_from={tmp_path / 'half'}"],
    }.get(case)
    if case == "not-decoder":
        transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2)).save_pretrained(
            teachers / "gpt2"
        )
        extra = [f"teacher={teachers / 'gpt2'}"]
    if case == "heads":
        extra = [f"teacher={bad_gqa_folder(teachers / 'gqa')}"]
    if case.startswith("run-"):
        run = tmp_path / "runs" / "pythia-debug-s0"
        run.mkdir(parents=True)
        (run / "run.json").write_text('{"status": "done"}')
        if case == "run-exporting-gpt-neox":  # the project's pythia exports as GPT-NeoX: no q/k/v/o, not GQA
            config = transformers.GPTNeoXConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=32, vocab_size=600)  # fmt: skip
            transformers.GPTNeoXForCausalLM(config).save_pretrained(run / "hf" / "checkpoint-4")
        extra = [f"teacher={run}"]
    if case == "stage2-unfinished":
        (tmp_path / "half" / "student").mkdir(parents=True)  # a run dir whose stage 1 never saved its student
    capsys.readouterr()  # the set-up's own output (transformers' progress bars)
    rc = main(distill_args(tmp_path, data_cache, *extra))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "distill." in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()


def test_short_run_writes_a_run_directory(tmp_path, data_cache, capsys):
    teacher = save_teacher(tmp_path / "teacher")
    args = ["norm=none", "stage1_steps=3", "stage2_steps=2", "eval_every=2", "eval_batches=1", "batch_size=2"]
    rc = main(distill_args(tmp_path, data_cache, f"teacher={teacher}", "kernel_impl=reference", "wandb=offline", *args))
    assert rc == 0, capsys.readouterr().err
    rd, cfg, run = open_run(tmp_path / "results" / "distill" / "none-s0")
    assert run.status == "done" and cfg.distill.norm == "none"
    records = rd.read_metrics()
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert {"train/l2", "train/l2_layer0", "train/l2_layer1", "val/kl", "val/top1"} <= set(records[0])
    assert records[-1]["stage"] == 2 and "val/kl" in records[-1] and "train/kl" in records[-1]
    assert run["metrics"]["kl_final"] == records[-1]["val/kl"]
    assert list((rd.path / "wandb").glob("offline-run-*/run-*.wandb"))  # the same records, for `wandb sync`
    card = rd.card_file.read_text()
    assert str(teacher) in card and "stage 1" in card and "stage 2" in card and f"{records[-1]['val/kl']:.4f}" in card
    # stage 2 alone continues that finished stage 1
    rc = main(distill_args(tmp_path, data_cache, f"teacher={teacher}", "stage=2",
                           f"stage1_from={rd.path}", "run_name=stage2-only", *args))  # fmt: skip
    assert rc == 0
    again = open_run(tmp_path / "results" / "distill" / "stage2-only")[0].read_metrics()
    assert [r["stage"] for r in again] == [2, 2]


def test_sweep_file_expands_norm_by_seed():
    repo = Path(__file__).resolve().parents[2]
    name, points = expand(repo / "sweeps" / "distill.yaml", "demo")
    assert name == "distill-demo" and len(points) == 4
    want = {(f"norm={n}", f"seed={s}") for n in ("groupnorm", "none") for s in (0, 1)}
    assert {(p[-2], p[-1]) for p in points} == want
    assert "teacher=demo" in points[0]


def test_teacher_tokenizer_streams_and_run(tmp_path, data_cache, capsys):
    """tokenizer=teacher: the documents of data.* tokenised by the tokenizer saved with the teacher."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from parcae_runner.distill.data import tokenize_with

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(40):
        (docs / f"d{i}.txt").write_text(f"document {i}: " + " ".join(f"word{j * i % 17}" for j in range(60)))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(p) for p in docs.iterdir()], trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<eos>"]))
    teacher = save_teacher(tmp_path / "teacher")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")
    fast.save_pretrained(teacher)
    fast = transformers.AutoTokenizer.from_pretrained(teacher)  # as the run reads it back
    data = {"source": "text_files", "path": str(docs), "seq_len": 16}
    streams, seq_len = tokenize_with(str(teacher), data)
    assert seq_len == 16 and streams.vocab_size == len(fast) and len(streams.val) > 0
    eos = fast.eos_token_id
    assert (streams.train == eos).sum() + (streams.val == eos).sum() == 40  # one EOS after every document
    # documents keep their order: the first training document's tokens start the training stream
    split = [p for p in sorted(docs.iterdir()) if not _is_heldout(p.read_text())]
    first = fast(split[0].read_text(), add_special_tokens=False)["input_ids"]
    assert streams.train[: len(first)].tolist() == first
    args = ["tokenizer=teacher", "stage1_steps=1", "stage2_steps=1", "eval_every=1", "eval_batches=1", "batch_size=2"]
    rc = main(["distill", f"results_dir={tmp_path / 'results'}", f"teacher={teacher}", "data.source=text_files",
               f"data.path={docs}", "data.seq_len=16", "kernel_impl=reference", *args])  # fmt: skip
    assert rc == 0, capsys.readouterr().err


def test_a_run_directory_teacher_is_its_newest_export(tmp_path):
    from parcae_runner.distill.student import check_teacher_folder, resolve_teacher

    run = tmp_path / "run"
    for step in (4, 12, 8):
        save_teacher(run / "hf" / f"checkpoint-{step}")
    (run / "run.json").write_text('{"status": "done"}')
    folder = resolve_teacher(str(run))
    assert folder == str(run / "hf" / "checkpoint-12") and check_teacher_folder(folder).model_type == "qwen2"
    assert resolve_teacher(str(tmp_path / "hf-folder")) == str(tmp_path / "hf-folder")
