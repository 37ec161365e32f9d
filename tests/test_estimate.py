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


def test_the_plan_plays_the_pool_through_with_the_timed_steps(monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("PAPERLIB_WORKERS", "2")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(estimate, "run_path", lambda p, n, s, d=None: tmp_path / f"{n}-{s}")
    # 0.5 s on one thread, 0.4 s alone on both, 0.75 s with two runs side by side
    monkeypatch.setattr(estimate, "step_seconds", lambda config, steps, warmup, threads: 0.5 if threads == 1 else 0.4)
    monkeypatch.setattr(estimate, "side_by_side_seconds", lambda *a: 0.75)
    # 100 test images at 0.2 s each: a pass takes 20 s, 23 s with what an evaluation adds
    monkeypatch.setattr(estimate, "test_images", lambda config: 100)
    monkeypatch.setattr(estimate, "inception_seconds", lambda threads, images=50: 0.2)
    monkeypatch.setattr(estimate, "FACTORS_FROM_SECONDS", 0)
    monkeypatch.setattr(estimate, "EVAL_OVERHEAD", 0.15)
    monkeypatch.setattr(estimate, "side_by_side_inception_seconds", lambda workers, threads: 0.4)
    monkeypatch.setattr(estimate, "LOOP_OVERHEAD", 1.1)
    plan = estimate.plan("smoke", "openmoji", ["03_aggregation_ablation.ipynb", "06_no_reference.ipynb"])
    steps = registry.run_config("smoke", "add", 0, "openmoji").train.max_steps
    seeds = len(registry.study_seeds("smoke"))
    assert plan.steps == {"03": 3 * seeds * steps, "06": seeds * steps}
    assert (plan.side_by_side, plan.lone, plan.cores) == (pytest.approx(1.5), pytest.approx(0.8), 2)
    # 03: two passes per run, the first run also the real images' pass (20 s); 06: three. The
    # loop costs 1.1x the bare step; side by side a step takes 1.5x, an Inception pass 2x.
    assert plan.side_by_side_evaluation == pytest.approx(2.0)
    factors = {"train": 1.5, "evaluate": 2.0}
    jobs03 = [[(steps * 0.5 * 1.1, "train"), (2 * 23, "evaluate")] for _ in range(3 * seeds)]
    jobs03[0][1] = (2 * 23 + 20, "evaluate")
    assert plan.minutes["03"] == pytest.approx(estimate.pool_seconds(jobs03, 2, factors, 0.8) / 60)
    jobs06 = [[(steps * 0.5 * 1.1, "train"), (3 * 23, "evaluate")] for _ in range(seeds)]
    assert plan.minutes["06"] == pytest.approx(estimate.pool_seconds(jobs06, 2, factors, 0.8) / 60)
    assert plan.evaluation_minutes == pytest.approx({"03": (3 * seeds * 46 + 20) / 60,
                                                     "06": seeds * 69 / 60})
    text = plan.summary()
    assert "Estimated time" in text and plan.cpu in text and "0.200 s per image" in text
    assert "1.50x as long" in text and "on 2 threads, 0.80x" in text


def test_noisy_factors_are_held_to_their_bounds(monkeypatch, tmp_path):
    """A side-by-side timing faster than alone, or a two-thread one slower, is noise."""
    monkeypatch.setenv("PAPERLIB_WORKERS", "2")
    monkeypatch.setattr(estimate, "run_path", lambda p, n, s, d=None: tmp_path / f"{n}-{s}")
    monkeypatch.setattr(estimate, "step_seconds", lambda config, steps, warmup, threads: 0.5 if threads == 1 else 0.6)
    monkeypatch.setattr(estimate, "side_by_side_seconds", lambda *a: 0.4)
    monkeypatch.setattr(estimate, "threads_per_worker", lambda workers: 1)
    monkeypatch.setattr(estimate, "test_images", lambda config: 10)
    monkeypatch.setattr(estimate, "inception_seconds", lambda threads, images=50: 0.1)
    monkeypatch.setattr(estimate, "FACTORS_FROM_SECONDS", 0)
    monkeypatch.setattr(estimate, "side_by_side_inception_seconds", lambda workers, threads: 0.05)
    plan = estimate.plan("smoke", "openmoji", ["04_loss_ablation.ipynb"])
    assert (plan.side_by_side, plan.lone, plan.side_by_side_evaluation) == (1.0, 1.0, 1.0)


def test_a_small_plan_times_no_factors(monkeypatch, tmp_path):
    """Under FACTORS_FROM_SECONDS of work the factors stay 1 and nothing is spawned to time them:
    a smoke reproduction's plan must not cost more than its runs."""
    monkeypatch.setenv("PAPERLIB_WORKERS", "2")
    monkeypatch.setattr(estimate, "run_path", lambda p, n, s, d=None: tmp_path / f"{n}-{s}")
    monkeypatch.setattr(estimate, "step_seconds", lambda config, steps, warmup, threads: 0.01)
    monkeypatch.setattr(estimate, "test_images", lambda config: 12)
    monkeypatch.setattr(estimate, "inception_seconds", lambda threads, images=50: 0.1)
    for name in ("side_by_side_seconds", "side_by_side_inception_seconds"):
        monkeypatch.setattr(estimate, name, lambda *a: pytest.fail("timed side by side"))
    plan = estimate.plan("smoke", "openmoji", ["03_aggregation_ablation.ipynb"])
    assert not plan.factors_timed and (plan.side_by_side, plan.lone) == (1.0, 1.0)
    assert "not timed" in plan.summary()


def test_the_evaluations_are_counted_as_the_notebooks_run_them(monkeypatch):
    monkeypatch.setattr(estimate, "precision_runs", lambda: dict(registry.PRECISION_RUNS))
    assert {n: estimate.inception_passes("02", n) for n, _ in estimate.notebook_jobs("02")} == {
        registry.MAIN: 2, "short-bf16": 0, "short-fp32": 0}
    assert estimate.inception_passes("03", "sga") == estimate.inception_passes("04", "scft-l1") == 2
    assert estimate.inception_passes("06", "scft-noref") == 3


@pytest.mark.parametrize("seconds,workers,side,lone,wall", [
    ([10, 10, 10], 1, 1.5, 0.8, 30),  # one worker: one after the other
    ([10, 10, 10, 10], 2, 1.0, 1.0, 20),  # no slow-down: the work shared evenly
    ([10, 10, 10], 2, 1.5, 0.8, 10 * 1.5 + 10 * 0.8),  # two side by side, then one alone
    # longest first: 30 and 10 side by side (15 s), then 20 left and 10 (15 s), then 10 alone (8 s)
    ([10, 30, 10], 2, 1.5, 0.8, 38),
    ([0, 0], 2, 1.5, 0.8, 0),
])
def test_the_pool_is_played_through_longest_first(seconds, workers, side, lone, wall):
    assert estimate.pool_seconds(seconds, workers, side, lone) == pytest.approx(wall)


def test_each_phase_of_a_job_has_its_own_side_by_side_factor():
    """Two jobs of 10 s training then 5 s evaluation, side by side: training at 1.5x (15 s),
    evaluation at 2x (10 s). A third job of 10 s training alone: at 0.8x, 8 s."""
    job = [(10, "train"), (5, "evaluate")]
    factors = {"train": 1.5, "evaluate": 2.0}
    assert estimate.pool_seconds([job, job], 2, factors, 0.8) == pytest.approx(25)
    assert estimate.pool_seconds([job, job, [(10, "train")]], 2, factors, 0.8) == pytest.approx(25 + 8)
    # a short job ends mid-way through the other's training: from then on the other runs alone
    assert estimate.pool_seconds([[(4, "train")], [(10, "train")]], 2, factors, 0.8) == \
        pytest.approx(4 * 1.5 + 6 * 0.8)
    assert estimate.pool_seconds([job], 1, factors, 0.8) == 15


def test_a_complete_reproduction_has_nothing_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr(estimate, "is_complete", lambda path: True)
    monkeypatch.setattr(estimate, "read_metrics", lambda path, **filters: [{"metric": "fid_cross"}])
    monkeypatch.setattr(estimate, "step_seconds", lambda *a, **k: pytest.fail("timed a step"))
    plan = estimate.plan("smoke", "openmoji", ["02_training.ipynb", "03_aggregation_ablation.ipynb"])
    assert plan.total_minutes() == 0
    assert "nothing to train" in plan.summary()


def test_a_step_is_timed_for_real_on_a_tiny_config():
    from paperlib.training.steptime import step_seconds

    config = registry.run_config("smoke", "scft-triplet", 0, "openmoji")
    assert 0 < step_seconds(config, steps=1, warmup=0, threads=1)


def test_the_inception_is_timed_for_real_and_the_test_split_counted():
    config = registry.run_config("smoke", "scft-triplet", 0, "openmoji")
    assert estimate.test_images(config) == config.data.eval_limit > 0
    assert 0 < estimate.inception_seconds(threads=1, images=1)


def test_a_resumed_reproduction_counts_the_evaluations_its_trained_runs_still_need(monkeypatch, tmp_path):
    """Runs trained but not (fully) evaluated, as a reproduction stopped in evaluation leaves
    them: no steps to time, but their Inception passes are still to do. Notebook 03's runs have
    no metrics (2 passes each); notebook 06's have the image-reference rows but not the
    zero-reference ones (1 pass each)."""
    monkeypatch.setenv("PAPERLIB_WORKERS", "2")
    monkeypatch.setattr(estimate, "run_path", lambda p, n, s, d=None: tmp_path / f"{n}-{s}")
    monkeypatch.setattr(estimate, "is_complete", lambda path: True)
    monkeypatch.setattr(estimate, "read_metrics", lambda path, no_reference=False: (
        [{"metric": "fid_cross"}] if path.name.startswith("scft-noref") and not no_reference else []))
    monkeypatch.setattr(estimate, "step_seconds", lambda *a, **k: pytest.fail("timed a step"))
    monkeypatch.setattr(estimate, "test_images", lambda config: 100)
    monkeypatch.setattr(estimate, "inception_seconds", lambda threads, images=50: 0.2)
    monkeypatch.setattr(estimate, "FACTORS_FROM_SECONDS", 10 ** 9)
    monkeypatch.setattr(estimate, "EVAL_OVERHEAD", 0.15)
    plan = estimate.plan("smoke", "openmoji", ["03_aggregation_ablation.ipynb", "06_no_reference.ipynb"])
    seeds = len(registry.study_seeds("smoke"))
    assert plan.steps == {"03": 0, "06": 0}
    # a pass: 100 images at 0.2 s, 23 s with what an evaluation adds; the real images' 20 s once
    assert plan.evaluation_minutes == pytest.approx({"03": (3 * seeds * 2 * 23 + 20) / 60,
                                                     "06": seeds * 23 / 60})
    assert plan.minutes["03"] > 0 and plan.minutes["06"] > 0
    text = plan.summary()
    assert "trained; some are not evaluated yet" in text and "Estimated time" in text
    assert "nothing to train" not in text


def test_the_passes_left_of_one_run(monkeypatch, tmp_path):
    done = {"image": False, "zero": False}
    monkeypatch.setattr(estimate, "read_metrics", lambda path, no_reference=False: (
        [{"metric": "fid_cross"}] if done["zero" if no_reference else "image"] else []))
    monkeypatch.setattr(estimate, "is_complete", lambda path: False)
    assert estimate.passes_left("06", "scft-noref", tmp_path) == 3  # not trained: every pass
    monkeypatch.setattr(estimate, "is_complete", lambda path: True)
    assert estimate.passes_left("06", "scft-noref", tmp_path) == 3
    assert estimate.passes_left("03", "add", tmp_path) == 2
    assert estimate.passes_left("02", "short-fp32", tmp_path) == 0  # never evaluated
    done["image"] = True
    assert estimate.passes_left("06", "scft-noref", tmp_path) == 1
    assert estimate.passes_left("03", "add", tmp_path) == 0
    done["zero"] = True
    assert estimate.passes_left("06", "scft-noref", tmp_path) == 0


def test_notebook_09_plans_the_runs_of_both_datasets(monkeypatch, tmp_path):
    """Notebook 09 trains generalisation's runs, on both datasets, though no arm names it in
    TRAINED_BY: its plan must count them (it once said "nothing to train" and then trained six
    runs), each with its own dataset's config, and score two passes per case it serves."""
    monkeypatch.setenv("PAPERLIB_WORKERS", "2")
    monkeypatch.setattr(estimate, "run_path", lambda p, n, s, d=None: tmp_path / f"{d}-{n}-{s}")
    monkeypatch.setattr(estimate, "step_seconds", lambda config, steps, warmup, threads: 0.5)
    monkeypatch.setattr(estimate, "test_images", lambda config: 10)
    monkeypatch.setattr(estimate, "inception_seconds", lambda threads, images=50: 0.1)
    monkeypatch.setattr(estimate, "FACTORS_FROM_SECONDS", 10 ** 9)
    seeds = registry.study_seeds("smoke")
    triples = estimate.cross_dataset_jobs(seeds)
    assert {(n, d) for n, _, d in triples} == {(registry.MAIN, "openmoji"), (registry.MAIN, "faces"),
                                              ("scft-triplet-xdog", "openmoji")}
    assert len(triples) == 3 * len(seeds)
    plan = estimate.plan("smoke", "openmoji", ["09_generalisation.ipynb"])
    assert plan.steps["09"] == sum(registry.run_config("smoke", n, s, d).train.max_steps
                                   for n, s, d in triples) > 0
    from paperlib.study.generalisation import CASES
    assert plan.evaluation_minutes["09"] == pytest.approx(
        (2 * len(CASES) * len(seeds) * 10 * 0.1 * (1 + estimate.EVAL_OVERHEAD) + 10 * 0.1) / 60)
    assert "nothing to train" not in plan.summary() and plan.minutes["09"] > 0


def test_the_cases_left_of_one_run(monkeypatch, tmp_path):
    """A trained run owes the cases whose metrics are not stored: here the faces model has its
    own test split scored, not OpenMoji's nor the unseen style."""
    monkeypatch.setattr(estimate, "run_path", lambda p, n, s, d=None: tmp_path)
    monkeypatch.setattr(estimate, "is_complete", lambda path: False)
    assert estimate.cases_left("smoke", registry.MAIN, 0, "faces") == 3
    monkeypatch.setattr(estimate, "is_complete", lambda path: True)
    monkeypatch.setattr(estimate, "read_metrics", lambda path, split=None, dataset=None, sketch_source=None: (
        [{"metric": "fid_cross"}] if (split, dataset) == ("test", "faces") else []))
    assert estimate.cases_left("smoke", registry.MAIN, 0, "faces") == 2
    assert estimate.cases_left("smoke", "scft-triplet-xdog", 0, "openmoji") == 2
    assert estimate.cases_left("smoke", "add", 0, "openmoji") == 0  # serves no case
