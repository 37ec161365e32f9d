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


def test_try_times_keep_one_row_per_dataset_profile_cpu_and_precision():
    text = try_it.update_try_times("", "openmoji", "mini", "CPU A", "bf16", 1300, 20.04, 18.0)
    text = try_it.update_try_times(text, "faces", "mini", "CPU A", "bf16", 1300, 21.0, 19.0)
    text = try_it.update_try_times(text, "openmoji", "mini", "CPU B", "fp32", 1300, 61.0, 55.0)
    # the same dataset, CPU and precision again: its row is replaced, not added
    text = try_it.update_try_times(text, "openmoji", "mini", "CPU A", "bf16", 1300, 22.0, 18.5)
    lines = text.splitlines()
    assert lines[0].split("\t") == list(try_it.TRY_TIMES_HEADER)
    assert lines[1:] == ["faces\tmini\tCPU A\tbf16\t1300\t21.0\t19.0",
                         "openmoji\tmini\tCPU A\tbf16\t1300\t22.0\t18.5",
                         "openmoji\tmini\tCPU B\tfp32\t1300\t61.0\t55.0"]


def test_plan_only_times_and_trains_nothing(monkeypatch, tmp_path):
    run = tmp_path / "run"
    monkeypatch.setattr(try_it, "run_path", lambda *a, **k: run)
    monkeypatch.setattr(try_it, "prepare", lambda config: None)
    monkeypatch.setattr(try_it, "step_seconds", lambda config, **k: 0.25)
    monkeypatch.setattr(try_it, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(try_it, "record_time", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    out = io.StringIO()
    assert try_it.first_model("smoke", "openmoji", 0, out=out, plan_only=True) == run
    assert "0.25 s a step" in out.getvalue() and not run.exists()


def test_a_run_trained_from_its_first_step_records_its_time(monkeypatch, tmp_path):
    run = tmp_path / "run"
    recorded = []
    monkeypatch.setattr(try_it, "run_path", lambda *a, **k: run)
    monkeypatch.setattr(try_it, "prepare", lambda config: None)
    monkeypatch.setattr(try_it, "step_seconds", lambda config, **k: 0.5)
    monkeypatch.setattr(try_it, "train", lambda config, path, progress=True: None)
    monkeypatch.setattr(try_it, "record_time", lambda *a: recorded.append(a))
    steps = registry.run_config("mini", registry.MAIN, 0, "faces").train.max_steps
    try_it.first_model("mini", "faces", 0, out=io.StringIO())
    (dataset, profile, _cpu, _precision, left, _minutes, estimated), = recorded
    assert (dataset, profile, left) == ("faces", "mini", steps) and estimated == steps * 0.5 / 60
    # a resumed run is not what `make try` costs: nothing is recorded
    recorded.clear()
    monkeypatch.setattr(try_it, "steps_done", lambda path: 10)
    try_it.first_model("mini", "faces", 0, out=io.StringIO())
    assert recorded == []
