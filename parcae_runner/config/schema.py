"""Typed schemas for every config group.

YAML files under ``launch_configs/`` hold values only; these dataclasses hold the
keys and their types. Registered in Hydra's ConfigStore (see ``store.py``), they make
a misspelled key or a wrong type fail at start-up, before anything is trained.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


# The allowed values of the string fields below. The fields stay ``str`` (an Enum field would change how
# config.yaml spells the value); validation and the code that acts on a value compare against these.
class Schedule(enum.StrEnum):
    COSINE = "cosine"
    LINEAR = "linear"
    CONSTANT = "constant"
    # warm-up, stable, linear decay over train.cooldown_fraction (Parcae's "trapezoid")
    WSD = "wsd"


class Optimizer(enum.StrEnum):
    ADAMW = "adamw"
    # Parcae's MuonAdamW: Muon on hidden matrices, AdamW on the rest (parcae_runner/train/optim.py)
    MUON = "muon"


class NsCoefficients(enum.StrEnum):
    POLAR_EXPRESS = "polar_express"
    KELLER = "keller"


class NsDtype(enum.StrEnum):
    AUTO = "auto"
    BF16 = "bf16"
    FP32 = "fp32"


class CheckpointSchedule(enum.StrEnum):
    PYTHIA = "pythia"
    INTERVAL = "interval"
    LIST = "list"
    NONE = "none"


class Precision(enum.StrEnum):
    AUTO = "auto"
    FP32 = "32"
    FP32_TRUE = "32-true"
    BF16_MIXED = "bf16-mixed"
    BF16_TRUE = "bf16-true"
    FP16_MIXED = "16-mixed"


class DataSource(enum.StrEnum):
    EMBEDDED = "embedded"
    TEXT_FILES = "text_files"
    JSONL = "jsonl"
    PARQUET = "parquet"
    HF = "hf"
    PRETOKENIZED = "pretokenized"


class TokenizerRecipe(enum.StrEnum):
    GPT2 = "gpt2"
    PARCAE = "parcae"


class DataOrder(enum.StrEnum):
    SHUFFLED = "shuffled"
    SEQUENTIAL = "sequential"


class WandbMode(enum.StrEnum):
    OFFLINE = "offline"
    ONLINE = "online"
    DISABLED = "disabled"


class Strategy(enum.StrEnum):
    AUTO = "auto"  # ddp, unless the memory plan says the model does not fit one GPU that way and fsdp fits
    DDP = "ddp"  # every rank holds the whole model, its gradients and optimizer states (Lightning's DDP)
    FSDP = "fsdp"  # parameters, gradients and optimizer states sharded over the ranks (FSDP2, fully_shard)


class Launcher(enum.StrEnum):
    LOCAL = "local"
    SLURM = "slurm"


class Container(enum.StrEnum):
    NONE = "none"
    PYXIS = "pyxis"
    APPTAINER = "apptainer"
    DOCKER = "docker"


@dataclass
class SizeConfig:
    """A size name (``debug``, ``14m``, ...): every architecture maps it to its own dims
    so that one name means about the same parameter count everywhere."""

    name: str = MISSING


@dataclass
class DataConfig:
    """Where tokens come from, which tokenizer makes them, and how they are cut into training sequences."""

    # embedded | text_files | jsonl | parquet | hf | pretokenized (see parcae_runner/data/sources.py)
    source: str = "embedded"
    # a file or folder (text_files, jsonl, parquet, pretokenized)
    path: str | None = None
    # hf: a hub name (read from the local HF cache), a save_to_disk folder or a local data folder
    dataset: str | None = None
    config_name: str | None = None
    split: str = "train"
    revision: str | None = None
    # the text column / JSON field (jsonl, parquet, hf)
    text_field: str = "text"
    streaming: bool = False
    # let `datasets` download into the HF cache; off: offline, a missing dataset is an error with a how-to
    download: bool = False
    # "train": a byte-level BPE trained on this corpus's training split; else a tokenizer.json, a local tokenizer
    # folder or a hub name in the HF cache
    tokenizer: str = "train"
    # with tokenizer=train: gpt2 (GPT-2's byte-level BPE, <|endoftext|>) | parcae (Parcae's tok_train.py)
    tokenizer_recipe: str = "gpt2"
    # with tokenizer=train: at most this many characters of training text (Parcae: 2e9)
    tokenizer_train_chars: int = 2_000_000_000
    # the token between documents; null: the tokenizer's own eos (or <|endoftext|>, </s>, ...)
    eos_token: str | None = None
    # with tokenizer=train: the vocabulary to train. With a pretrained tokenizer: the model's vocabulary, null
    # (the tokenizer's, padded to pad_vocab_multiple) or at least that
    vocab_size: int | None = 4096
    # the model's vocabulary is the tokenizer's rounded up to this multiple (GPT-NeoX/Pythia: 128)
    pad_vocab_multiple: int = 128
    seq_len: int = 256
    # fraction of documents held out for validation (chosen by a hash of the document)
    val_fraction: float = 0.05
    # the data seed fixes the sample order; the model seed (top-level ``seed``) never touches it
    seed: int = 1234
    # shuffled: a keyed permutation per epoch; sequential: the prepared order (a pre-shuffled corpus like Pythia's)
    order: str = "shuffled"
    # true: windows of seq_len+1 tokens every seq_len (none wasted); false: every seq_len+1 (GPT-NeoX/Pythia samples)
    chunk_overlap: bool = True
    # a run may see its data at most this many times (plan and train refuse above it)
    max_epochs: float = 4.0
    # documents per prepared shard (a unit of resumption of `prepare`)
    docs_per_shard: int = 100_000
    cache_dir: str = ".cache/parcae-runner/data"


@dataclass
class CheckpointConfig:
    # pythia: steps 0, 1, 2, 4, ..., 512 then every ``every``; interval: every ``every``; list: ``steps``
    schedule: str = "pythia"
    every: int = 1000
    steps: list[int] = field(default_factory=list)
    # always save the final step so a finished run has its weights
    save_last: bool = True
    # how many of the newest checkpoints keep the optimizer/trainer state needed to resume;
    # older ones keep weights only (a Parc-style every-10-steps schedule would otherwise fill disks)
    # 2: when the newest is found corrupt at resume, the one before it still resumes the run
    keep_resume_state: int = 2


@dataclass
class EvalDuringTraining:
    """Tasks evaluated at checkpoint steps while training (``parcae-runner eval`` does it afterwards)."""

    # bpb, lambada_embedded, or lm-eval task names whose data is local; [] = none
    tasks: list[str] = field(default_factory=list)
    # every n-th checkpoint of the schedule (the final one always): a dense schedule stays affordable
    every: int = 1
    # at most this many examples per lm-eval task (None: all)
    limit: int | None = None


@dataclass
class DivergenceConfig:
    """When a run counts as diverged (train/divergence.py). Steps with a non-finite loss or gradient are always
    skipped, not applied; this many in a row stop the run."""

    max_skipped_in_a_row: int = 10
    # Parcae's loss_guardrail: a training loss above this after guardrail_after_steps stops the run; null: off
    loss_guardrail: float | None = None
    guardrail_after_steps: int = 100


@dataclass
class FsdpConfig:
    """FSDP2 (``torch.distributed.fsdp.fully_shard``) settings, read when ``train.strategy`` resolves to fsdp."""

    # free each block's gathered parameters after its forward (gathered again for backward): less memory, one more
    # all-gather per block; false keeps them until backward (ZeRO-2-like)
    reshard_after_forward: bool = True
    # on GPU: bf16 parameters for compute, fp32 gradient reduction, fp32 master copy; on CPU everything stays fp32
    mixed_precision: bool = True
    # keep the sharded parameters, gradients and optimizer states in host memory (slow; for models that fit no
    # other way)
    cpu_offload: bool = False
    # with several nodes: shard within a node, replicate across nodes (HSDP); false shards over every GPU
    hybrid: bool = False


@dataclass
class MuonConfig:
    """``train.optimizer=muon``: Muon's settings (parcae_runner/train/muon.py names the source of each).
    Defaults are Parcae's ``optim_config`` (muon_lr, muon_momentum, muon_wd, muon_ns_steps) and its schedules."""

    # null: train.lr
    lr: float | None = None
    momentum: float = 0.95
    # momentum warms up linearly from momentum_start to momentum over momentum_warmup_steps updates
    momentum_start: float = 0.85
    momentum_warmup_steps: int = 300
    weight_decay: float = 0.2
    # weight decay falls linearly to 0 at train.max_steps
    weight_decay_to_zero: bool = True
    # decay only where update and weight agree in sign
    cautious_weight_decay: bool = True
    nesterov: bool = True
    # polar_express (a quintic per iteration) | keller (3.4445, -4.7750, 2.0315)
    ns_coefficients: str = "polar_express"
    ns_steps: int = 5
    # NorMuon: per-row second moments of the orthogonalised update
    normuon: bool = True
    beta2: float = 0.95
    # precision of the Newton-Schulz iterations: auto (bf16 on GPU, the gradient's dtype elsewhere) | bf16 | fp32
    ns_dtype: str = "auto"


@dataclass
class TrainConfig:
    max_steps: int = 200
    # a compute budget in training FLOPs (models/flops.py, in train.flops_convention); when set, it decides
    # max_steps = budget / (FLOPs per token x tokens per step), whatever max_steps says
    max_flops: float | None = None
    # a budget in training tokens (Parcae's max_tokens); when set, it decides max_steps = budget / tokens per
    # step (rounded). At most one of max_tokens and max_flops; with neither, max_steps decides
    max_tokens: float | None = None
    # exact: this repository's count (models/flops.py) | parcae: Parcae's scripts/cost.py (value-embedding tables
    # counted, tied head left out, nominal R and k), so that a max_flops budget buys Parcae's tokens
    flops_convention: str = "exact"
    # the effective batch, in sequences, summed over devices and accumulation steps
    batch_size: int = 16
    micro_batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 20
    # cosine | constant | linear | wsd
    schedule: str = "cosine"
    # wsd: the fraction of max_steps over which lr decays linearly to min_lr (Parcae's trapezoid: 0.5)
    cooldown_fraction: float = 0.5
    # adamw | muon (Muon on hidden matrices, AdamW on the rest; train.muon)
    optimizer: str = "adamw"
    muon: MuonConfig = field(default_factory=MuonConfig)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    # parameters whose name contains one of these (or that have fewer than 2 dims) get no weight decay
    no_decay: list[str] = field(default_factory=lambda: ["bias", "norm"])
    # auto: 32 on CPU, bf16-mixed on GPU
    precision: str = "auto"
    # with precision 32: matmuls on TF32 tensor cores (torch.set_float32_matmul_precision("high")); plan counts tf32
    tf32: bool = False
    # torch.compile the model (looped models: their blocks, around the loop); activation checkpointing per block
    compile: bool = False
    activation_checkpointing: bool = False
    # auto | ddp | fsdp (schema.Strategy; docs/strategies.md): how the model is spread over the ranks
    strategy: str = "auto"
    fsdp: FsdpConfig = field(default_factory=FsdpConfig)
    val_interval: int = 50
    val_batches: int = 8
    log_interval: int = 10
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalDuringTraining = field(default_factory=EvalDuringTraining)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    # auto | cpu | gpu; devices per node (``auto`` = all visible)
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    num_workers: int = 0
    progress: bool = True
    # start from the weights of an exported Hugging Face folder (same architecture and size)
    init_from: str | None = None


@dataclass
class ClusterConfig:
    """Facts about where jobs run. A profile (``launch_configs/cluster/``) is the only place
    cluster facts live: partitions, GPUs, time limits, images, the grid's country."""

    name: str = "local"
    # local: processes on this machine; slurm: sbatch job arrays through submitit
    launcher: str = "local"
    # Slurm's ClusterName (scontrol show config); plan checks partitions only on the named cluster
    cluster_name: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    # one task per GPU: tasks per node = GPUs per node = Lightning devices (DDP)
    gpus_per_node: int = 0
    # training ranks per node: null = one per GPU (at least one); a number on CPU nodes (DDP over gloo); with GPUs it
    # must equal gpus_per_node
    tasks_per_node: int | None = None
    # what train.accelerator=auto becomes on a profile with GPUs: gpu (null), so a node without CUDA is an error,
    # not a slow CPU run; only a test profile whose GPUs are fake (slurm_local_gpu) says cpu
    accelerator: str | None = None
    cpus_per_task: int = 1
    mem_gb: float = 4.0
    # memory of one GPU in GB (1e9 bytes): the memory plan refuses a run that does not fit it; null: not checked
    # (CPU profiles)
    gpu_memory_gb: float | None = None
    time_min: int = 60
    # jobs of one array that may run at once
    array_parallelism: int = 64
    # the time-limit/preemption signal (SIGUSR1) arrives this many seconds before the end
    signal_delay_s: int = 120
    # after this many requeues a run stops with status "requeue-limit"
    max_requeues: int = 3
    # local launcher: runs at once on this machine
    max_parallel: int = 1
    # container: none | pyxis | apptainer | docker; image reference (tag or digest)
    container: str = "none"
    image: str | None = None
    # extra #SBATCH flags, e.g. {exclusive: true}
    sbatch_extra: dict[str, Any] = field(default_factory=dict)
    # codecarbon: ISO 3166-1 alpha-3 country code and optional region of the data centre
    country_iso_code: str = "USA"
    region: str | None = None
    # grid carbon intensity, kg CO2eq per kWh: null = codecarbon's figure for country_iso_code; else this figure is
    # used by plan and the run's meter (co2 = energy x figure), with carbon_intensity_source named in run.json/card
    carbon_intensity_kg_per_kwh: float | None = None
    carbon_intensity_source: str | None = None
    # a key of parcae_runner.config.hardware.HARDWARE (cpu, a100, h100, ...): used by `plan`
    gpu_type: str = "cpu"
    # planning assumptions; mfu null = the hardware table's measured utilisation for the run's precision
    mfu: float | None = None
    pue: float = 1.2
    # informational; used by model cards ("infrastructure")
    infrastructure: str = "local machine"


@dataclass
class LoggerConfig:
    wandb: bool = True
    # offline (default: runs live under the run dir, ``wandb sync`` later) | online | disabled
    mode: str = "offline"
    project: str = "parcae-runner"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    codecarbon: bool = True
    measure_power_secs: float = 15.0
    # the energy so far is written to disk this often, so a SIGKILLed attempt loses at most this much of it
    energy_flush_secs: float = 60.0


@dataclass
class RunConfig:
    """The primary config: one training run."""

    # filled from the arch group; its schema comes from the registry (each architecture its own)
    arch: Any = MISSING
    size: SizeConfig = field(default_factory=SizeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # model initialisation seed; the data order is fixed by data.seed
    seed: int = 0
    # results/<sweep>/<run_name>/; run_name defaults to <arch>-<size>-s<seed>
    results_dir: str = "results"
    sweep: str = "single"
    run_name: str | None = None
