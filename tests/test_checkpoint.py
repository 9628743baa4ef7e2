"""Checkpoint handlers: the best-model saver keeps its best score across a resume (model.pt stays the network's
weights alone), the resume loader refuses another or a finished run by name, the periodic saver keeps only its own."""

import pytest
import torch
from ignite.engine import Engine, Events

from bundle.engines import (BestModelSaver, CheckedCheckpointLoader, CheckpointError, RollingCheckpointSaver,
                            RunIdentity, RunMismatchError, latest_checkpoint)


def evaluator_with(score: float) -> Engine:
    engine = Engine(lambda engine, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(engine: Engine) -> None:
        engine.state.metrics["val_macro_auc"] = score

    return engine


def saver_for(tmp_path, network):
    return BestModelSaver(save_dir=str(tmp_path), save_dict={"model": network}, save_key_metric=True,
                          key_metric_name="val_macro_auc", key_metric_filename="model.pt")


def test_best_score_survives_a_resume(tmp_path):
    network = torch.nn.Linear(2, 1)
    first = saver_for(tmp_path, network)
    evaluator = evaluator_with(0.8)
    first.attach(evaluator)
    evaluator.run([0], max_epochs=1)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(saved) == {"weight", "bias"}, "model.pt must be a plain state dict"
    state = first.state_dict()

    with torch.no_grad():
        network.weight.fill_(7.0)  # the resumed run's (worse) model
    resumed = saver_for(tmp_path, network)
    resumed.load_state_dict(state)
    worse = evaluator_with(0.5)
    resumed.attach(worse)
    worse.run([0], max_epochs=1)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], saved["weight"])

    fresh = saver_for(tmp_path, network)  # without the state, the worse model overwrites the best
    again = evaluator_with(0.5)
    fresh.attach(again)
    again.run([0], max_epochs=1)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["weight"].eq(7.0).all()


def run_for(epochs: int, *handlers) -> Engine:
    engine = Engine(lambda engine, batch: None)
    for handler in handlers:
        handler.attach(engine)
    engine.run([0], max_epochs=epochs)
    return engine


def test_run_identity_names_every_difference():
    identity = RunIdentity(variant="medfilip", seed=0, datalist_file="/data/a.json")
    identity.load_state_dict({"variant": "medfilip", "seed": 0, "datalist_file": "/data/a.json"})
    with pytest.raises(RunMismatchError, match=r"variant: 'no_iki' in the checkpoint, 'medfilip' now; "
                                               r"datalist_file: None in the checkpoint, '/data/a.json' now\)$"):
        identity.load_state_dict({"variant": "no_iki", "seed": 0})


def test_resuming_a_run_that_trained_more_epochs_than_asked_names_the_checkpoint(tmp_path):
    network, path = torch.nn.Linear(2, 1), tmp_path / "checkpoint_checkpoint_epoch=3.pt"
    torch.save({"trainer": run_for(3).state_dict(), "model": network.state_dict()}, path)
    resumed = Engine(lambda engine, batch: None)
    CheckedCheckpointLoader(str(path), {"trainer": resumed, "model": network}).attach(resumed)
    with pytest.raises(CheckpointError, match=rf"checkpoint '{path}': it has trained 3 epochs and max_epochs is 2: "
                                              r"nothing is left to train. Fix: to train this run further, pass "
                                              r"--max_epochs above 3"):
        resumed.run([0], max_epochs=2)


def test_a_checkpoint_written_without_the_run_identity_is_refused(tmp_path):
    network, path = torch.nn.Linear(2, 1), tmp_path / "checkpoint_checkpoint_epoch=1.pt"
    torch.save({"trainer": run_for(1).state_dict(), "model": network.state_dict()}, path)  # an older bundle's
    resumed = Engine(lambda engine, batch: None)
    load_dict = {"run_identity": RunIdentity(variant="medfilip"), "trainer": resumed, "model": network}
    CheckedCheckpointLoader(str(path), load_dict).attach(resumed)
    with pytest.raises(CheckpointError, match=r"it lacks \['run_identity'\], which this run saves .* Fix: to train "
                                              r"this run afresh, pass --resume false"):
        resumed.run([0], max_epochs=2)


def test_the_rolling_saver_keeps_only_this_runs_checkpoints(tmp_path):
    stale = tmp_path / "checkpoint_checkpoint_epoch=9.pt"  # left by an earlier, longer run
    stale.write_bytes(b"an earlier run's checkpoint")
    network = torch.nn.Linear(2, 1)
    saver = RollingCheckpointSaver(str(tmp_path), {"model": network, "optimizer": torch.optim.SGD(network.parameters(),
                                   lr=0.1)}, file_prefix="checkpoint", save_interval=1, epoch_level=True, n_saved=1)
    run_for(2, saver)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_checkpoint_epoch=2.pt"]
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_checkpoint_epoch=2.pt")
