"""The training skeleton: exact resume, config guard, Ctrl-C, budget, export, tracked run.

A toy trainer whose every step reads all the random generators a real one may touch
(Python's ``random``, NumPy's global one, torch's global one, a torch.Generator and a NumPy
Generator the trainer owns) and trains a small module with AdamW, so a resume that missed
any of that state would end with other numbers.
"""

from __future__ import annotations

import json
import random
import signal

import numpy as np
import pytest
import torch

from deepaudit.errors import DeepauditError
from deepaudit.trainer import Trainer, TrainState


class _Boom(Exception):
    pass


def _toy(tmp_path, *, total=10, every=3, seed=0, lr=1e-2, fail_at=None, **kw):
    """A trainer over fresh objects; ``fail_at``: raise inside that step, half-way through."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1)
    )
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng(seed + 2)
    state = TrainState(
        modules={"net": module},
        stateful={"opt": opt},
        generators={"noise": gen, "data": rng},
        values={"draws": []},
    )
    trainer = Trainer(
        tmp_path / "checkpoint", state, config={"lr": lr}, total=total, checkpoint_every=every, **kw
    )

    def step(i: int) -> dict[str, float]:
        x = torch.from_numpy(rng.normal(size=(16, 4)).astype(np.float32))
        x = x + torch.randn(x.shape, generator=gen) * random.random() + np.random.rand()
        if i == fail_at:
            raise _Boom  # after the generators moved on: this state must never be saved
        loss = (module(x) - x.sum(1, keepdim=True)).pow(2).mean()  # dropout: torch's global RNG
        opt.zero_grad()
        loss.backward()
        opt.step()
        state.values["draws"].append(float(torch.rand(1)))
        return {"loss": float(loss.detach())}

    return trainer, step


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.state.modules["net"].state_dict().items()}


def _global_rngs():
    return (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist())


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_kill_inside_a_step_resumes_to_the_same_bits(tmp_path):
    straight, step = _toy(tmp_path / "a")
    straight.fit(step)
    globals_after = _global_rngs()

    broken, step = _toy(tmp_path / "b", fail_at=7)
    with pytest.raises(_Boom):
        broken.fit(step)
    saved = json.loads((tmp_path / "b" / "checkpoint" / "progress.json").read_text())
    assert saved["step"] == 6  # the last cadence checkpoint, not the half-done step 7

    resumed, step = _toy(tmp_path / "b", seed=123)  # other seeds: the checkpoint must win
    resumed.fit(step)
    assert resumed.resumed_from == 6 and resumed.state.step == 10
    _same(_weights(straight), _weights(resumed))
    assert resumed.state.values == straight.state.values
    assert resumed.last_metrics == straight.last_metrics
    assert _global_rngs() == globals_after


def test_an_error_between_steps_keeps_the_finished_step(tmp_path):
    trainer, step = _toy(tmp_path, total=10, every=100)

    def stop_at_5(done, total, metrics):
        if done == 5:
            raise _Boom

    with pytest.raises(_Boom):
        trainer.fit(step, progress=stop_at_5)
    saved = json.loads((tmp_path / "checkpoint" / "progress.json").read_text())
    assert saved["step"] == 5


def test_first_ctrl_c_finishes_the_step_saves_and_stops(tmp_path):
    straight, step = _toy(tmp_path / "a")
    straight.fit(step)

    interrupted, step = _toy(tmp_path / "b", every=100)
    before = signal.getsignal(signal.SIGINT)

    def press_ctrl_c(i: int) -> dict[str, float]:
        if i == 4:
            signal.raise_signal(signal.SIGINT)  # lands in the middle of the step
        return step(i)

    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(press_ctrl_c)
    assert signal.getsignal(signal.SIGINT) is before
    saved = json.loads((tmp_path / "b" / "checkpoint" / "progress.json").read_text())
    assert saved["step"] == 5

    resumed, step = _toy(tmp_path / "b", every=100)
    resumed.fit(step)
    _same(_weights(straight), _weights(resumed))


def test_checkpoint_from_another_config_is_refused(tmp_path):
    trainer, step = _toy(tmp_path, fail_at=4)
    with pytest.raises(_Boom):
        trainer.fit(step)
    other, step = _toy(tmp_path, lr=5e-3)
    with pytest.raises(DeepauditError) as err:
        other.fit(step)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "checkpoint"))
    assert "another config (differs in lr)" in message and "delete the checkpoint" in message


def test_a_checkpoint_of_an_older_format_is_refused(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "progress.json").write_text('{"step": 3}')
    trainer, step = _toy(tmp_path)
    with pytest.raises(DeepauditError, match="not a checkpoint this deepaudit can resume"):
        trainer.fit(step)


def test_early_stop_is_part_of_the_state(tmp_path):
    trainer, step = _toy(tmp_path, total=10, every=100)

    def stop_after_4(i: int) -> dict[str, float]:
        out = step(i)
        trainer.state.stop = i == 3
        return out

    def boom_after(done, total, metrics):
        if trainer.state.stop:
            raise _Boom  # killed right after the step that decided to stop

    with pytest.raises(_Boom):
        trainer.fit(stop_after_4, progress=boom_after)
    again, step = _toy(tmp_path, total=10, every=100)
    again.fit(step)
    assert again.state.step == 4 and again.state.stop  # no step after the stop


def test_budget_stops_early_and_export_removes_the_checkpoint(tmp_path):
    import time

    trainer, step = _toy(tmp_path, total=1000, every=1, minutes=0.2 / 60)

    def slow(i: int) -> dict[str, float]:
        time.sleep(0.05)
        return step(i)

    trainer.fit(slow)
    assert 0 < trainer.state.step < 1000
    assert (tmp_path / "checkpoint").is_dir()
    (tmp_path / "checkpoint.part").mkdir()  # left behind by a kill during a checkpoint
    written = trainer.export(lambda: tmp_path / "model")
    assert written == tmp_path / "model"
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "checkpoint.part").exists()


def test_a_finished_output_is_not_trained_over(tmp_path):
    (tmp_path / "model.json").write_text("{}")
    trainer, step = _toy(tmp_path, finished=tmp_path / "model.json")
    with pytest.raises(DeepauditError, match="already holds a trained model"):
        trainer.fit(step)


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    trainer, step = _toy(tmp_path, lr=1e30, where="toy-data")
    with pytest.raises(DeepauditError, match=r"^toy-data: training diverged \(loss"):
        trainer.fit(step)


def test_tracked_run_gets_metrics_and_ends_finished_or_failed(tmp_path):
    from deepaudit.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"))
    trainer, step = _toy(tmp_path / "ok", total=6, log_every=2)
    with trainer.tracking(tracker, "toy", params={"lr": 1e-2}) as run:
        trainer.fit(step)
        trainer.export(lambda: None)
    record = tracker.get_run(run.run_id)
    assert record.status == "FINISHED" and record.params["lr"] == "0.01"
    assert record.metrics["steps_done"] == 6 and "final_loss" in record.metrics
    history = tracker.client.get_metric_history(run.run_id, "loss")
    assert [m.step for m in history] == [2, 4, 6]

    broken, step = _toy(tmp_path / "bad", fail_at=1)
    with pytest.raises(_Boom), broken.tracking(tracker, "toy") as run:
        broken.fit(step)
    assert tracker.get_run(run.run_id).status == "FAILED"


def test_a_failed_job_reopens_its_mlflow_run_on_rerun(tmp_path):
    """One training job is one mlflow run, however often it was interrupted."""
    from deepaudit.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"))
    broken, step = _toy(tmp_path / "job", fail_at=4)
    with pytest.raises(_Boom), broken.tracking(tracker, "toy", params={"lr": 1e-2}) as first:
        broken.fit(step)
    marker = tmp_path / "job" / "mlflow-run-id.txt"
    assert tracker.get_run(first.run_id).status == "FAILED"
    assert marker.read_text().strip() == first.run_id
    again, step = _toy(tmp_path / "job", total=10)
    with again.tracking(tracker, "toy", params={"lr": 1e-2}) as second:
        again.fit(step)
        again.export(lambda: None)
    assert second.run_id == first.run_id
    assert [r.run_id for r in tracker.list_runs()] == [first.run_id]
    assert tracker.get_run(first.run_id).status == "FINISHED" and not marker.exists()
    # a marker naming a run this store does not have: a new run, no error
    fresh, step = _toy(tmp_path / "other", total=2)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mlflow-run-id.txt").write_text("no-such-run\n")
    with fresh.tracking(tracker, "toy") as third:
        fresh.fit(step)
    assert third.run_id != first.run_id
