"""Data: document sources, tokenizers (trained or pretrained), prepared token shards and the shared sample order.

Typical use::

    prepared = prepare_data(cfg.data)                       # cached under data.cache_dir, see prepare.py
    train = TokenChunks(prepared.train, cfg.data.seq_len)   # windows over every shard
    sampler = StepSampler(len(train), cfg.data.seed, micro_bs, accumulate, world_size, rank, start_step, max_steps)
    loader = DataLoader(train, batch_size=micro_bs, sampler=sampler)
"""

from parcae_runner.data.budget import check_epochs, epochs_needed
from parcae_runner.data.corpus import embedded_documents, load_documents, text_file_documents
from parcae_runner.data.errors import DataError
from parcae_runner.data.loader import StepSampler, TokenChunks, validation_indices
from parcae_runner.data.order import sample_order
from parcae_runner.data.prepare import PreparedData, load_prepared, plan_data, prepare_data
from parcae_runner.data.tokenizer import EOT, EOT_ID, token_byte_lengths, train_tokenizer

__all__ = [
    "EOT",
    "EOT_ID",
    "DataError",
    "PreparedData",
    "StepSampler",
    "TokenChunks",
    "check_epochs",
    "embedded_documents",
    "epochs_needed",
    "load_documents",
    "load_prepared",
    "plan_data",
    "prepare_data",
    "sample_order",
    "text_file_documents",
    "token_byte_lengths",
    "train_tokenizer",
    "validation_indices",
]
