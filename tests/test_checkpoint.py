"""The best-model saver keeps its best score across a resume, and model.pt stays the network's weights alone."""

import torch
from ignite.engine import Engine, Events

from bundle.engines import BestModelSaver


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
