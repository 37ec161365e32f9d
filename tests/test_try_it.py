"""study.try_it: `make try` trains the main model alone, after saying how long it will take."""
import io

from paperlib.study import registry, try_it
from paperlib.training.snapshot import FINAL


def test_the_first_model_is_the_main_model_timed_then_trained(monkeypatch, tmp_path):
    run = tmp_path / "run"
    calls = []
    monkeypatch.setattr(try_it, "run_path", lambda *a, **k: run)
    monkeypatch.setattr(try_it, "prepare", lambda config: calls.append(("prepare", config.data.dataset)))
    monkeypatch.setattr(try_it, "step_seconds", lambda config, **k: 0.5)

    def fake_train(config, path, progress=True):
        calls.append(("train", config.model.encoder_strides, config.train.seed))
        path.mkdir(parents=True)
        (path / FINAL).write_bytes(b"")

    monkeypatch.setattr(try_it, "train", fake_train)
    out = io.StringIO()
    assert try_it.first_model("smoke", "faces", 0, out=out) == run
    steps = registry.run_config("smoke", registry.MAIN, 0, "faces").train.max_steps
    assert calls == [("prepare", "faces"), ("train", registry.GRID8_STRIDES, 0)]
    said = out.getvalue()
    assert f"{steps} steps left of {registry.MAIN} seed 0 on faces" in said and "0.50 s a step" in said
    # a second call finds it trained and neither times nor trains
    calls.clear()
    monkeypatch.setattr(try_it, "step_seconds", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    try_it.first_model("smoke", "faces", 0, out=out)
    assert calls == [] and "is trained" in out.getvalue()
