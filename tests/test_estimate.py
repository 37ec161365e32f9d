"""study.estimate: what make reproduce will train, timed here before it starts."""
import pytest

from paperlib.study import estimate, registry


def test_each_notebook_trains_its_arms_every_seed_and_02_the_precision_runs(monkeypatch):
    monkeypatch.setattr(estimate, "precision_runs", lambda: dict(registry.PRECISION_RUNS))
    jobs02 = estimate.notebook_jobs("02")
    assert sorted(jobs02) == sorted([(registry.MAIN, s) for s in registry.SEEDS]
                                    + [("short-bf16", 0), ("short-fp32", 0)])
    # the recipe study left make reproduce for its own command
    assert not any(n.startswith("recipe-") for n, _ in jobs02)
    assert sorted(estimate.notebook_jobs("03")) == sorted((a, s) for a in ("add", "adain", "sga")
                                                          for s in registry.SEEDS)
    assert len(registry.SEEDS) == 3
    monkeypatch.setattr(estimate, "precision_runs", lambda: {})
    assert not any(n.startswith("short-") for n, _ in estimate.notebook_jobs("02"))


def test_the_step_kind_ignores_the_seed_and_schedule_but_not_the_grid():
    a = registry.run_config("mini", "scft-triplet", 0)
    b = registry.run_config("mini", "scft-triplet", 1)
    assert estimate.step_kind(a) == estimate.step_kind(b)
    assert estimate.step_kind(registry.run_config("mini", "scft-l1", 0)) != estimate.step_kind(a)
    assert estimate.step_kind(registry.run_config("mini", "scft-triplet-grid8", 0)) != estimate.step_kind(a)
    assert estimate.step_kind(registry.run_config("mini", "scft-triplet-4x4", 0)) != estimate.step_kind(a)


def test_the_plan_multiplies_the_steps_left_by_the_timed_step(monkeypatch, tmp_path):
    monkeypatch.setenv("PAPERLIB_WORKERS", "2")
    monkeypatch.setattr(estimate, "run_path", lambda p, n, s, d=None: tmp_path / f"{n}-{s}")
    monkeypatch.setattr(estimate, "step_seconds", lambda config, *a, **k: 0.5)
    plan = estimate.plan("smoke", "openmoji", ["03_aggregation_ablation.ipynb"])
    steps = registry.run_config("smoke", "add", 0, "openmoji").train.max_steps
    assert plan.steps == {"03": 6 * steps}
    # six runs of `steps` at 0.5 s, two at a time
    assert plan.minutes["03"] == pytest.approx(6 * steps * 0.5 / 2 / 60)
    assert "Estimated training time" in plan.summary() and plan.cpu in plan.summary()


def test_a_complete_reproduction_has_nothing_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr(estimate, "is_complete", lambda path: True)
    monkeypatch.setattr(estimate, "step_seconds", lambda *a, **k: pytest.fail("timed a step"))
    plan = estimate.plan("smoke", "openmoji", ["02_training.ipynb", "03_aggregation_ablation.ipynb"])
    assert plan.total_minutes() == 0
    assert "nothing to train" in plan.summary()


def test_a_step_is_timed_for_real_on_a_tiny_config():
    from paperlib.training.steptime import step_seconds

    config = registry.run_config("smoke", "scft-triplet", 0, "openmoji")
    assert 0 < step_seconds(config, steps=1, warmup=0, threads=1)
