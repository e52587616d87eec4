"""The training entry point of the CLI and of Slurm array tasks: train, then the model card."""

from parcae_runner.config import compose_run_config
from parcae_runner.jobs import train_run
from parcae_runner.runs import RunStatus


def test_card_is_written_once_the_run_is_done(fast_overrides):
    cfg = compose_run_config([*fast_overrides, "train.max_steps=2", "train.val_batches=0"])
    run_dir = train_run(cfg)
    assert run_dir.read_run().status == RunStatus.DONE
    assert run_dir.card_file.read_text().startswith("---\n")
    # a finished run is not trained again, and its card is left as it is
    run_dir.card_file.write_text("kept\n")
    train_run(cfg)
    assert run_dir.card_file.read_text() == "kept\n"
