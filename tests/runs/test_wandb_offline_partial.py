"""An offline wandb file read while wandb's service is still writing it ends in a partial record: `is_complete` says
"not yet" (the caller keeps waiting) instead of raising protobuf's DecodeError."""

from __future__ import annotations

import struct

from parcae_runner.runs.wandb_offline import FULL, is_complete


def test_a_partly_written_record_is_not_complete_and_not_an_error(tmp_path):
    path = tmp_path / "run-x.wandb"
    # the file's own 7-byte header, then a record announcing 40 bytes of which only the first 4 are written yet: the
    # start of a protobuf field that claims 48
    file_header = b":W&B" + bytes(3)
    path.write_bytes(file_header + struct.pack("<IHB", 0, 40, FULL) + b"\x0a\x30\x01\x02")
    assert is_complete(path) is False
    assert is_complete(tmp_path / "absent.wandb") is False
