"""`bench --compare` and `bench --breakdown` on tiny settings."""
import pytest
import torch

from paperlib.tools import bench


@pytest.mark.bench
def test_compare_times_an_exported_commit_beside_the_working_tree():
    """Two alternating rounds, each with two worker processes side by side (one export of the
    commit serves both checks)."""
    result = bench.compare("HEAD", "smoke", rounds=2, warmup=1, steps=2, workers=2)
    assert set(result["seconds"]) == {"now", "HEAD"} and result["workers"] == 2
    assert all(len(v) == 2 and min(v) > 0 for v in result["seconds"].values())
    assert result["speedup"] == pytest.approx(
        result["median_seconds"]["HEAD"] / result["median_seconds"]["now"])
    assert result["cpu"]
    text = bench.format_compare(result)
    assert "speed-up now / HEAD" in text and "alternating rounds" in text
    assert "2 processes side by side" in text


def test_combined_seconds_adds_throughputs():
    assert bench.combined_seconds([0.2, 0.2]) == pytest.approx(0.1)
    assert bench.combined_seconds([0.1, 0.3]) == pytest.approx(0.075)  # 10 + 3.33 steps/s
    assert bench.combined_seconds([0.5]) == pytest.approx(0.5)


def test_compare_names_a_commit_that_does_not_exist():
    with pytest.raises(ValueError, match="no-such-commit"):
        bench.compare("no-such-commit", "smoke", rounds=1)


@pytest.mark.bench
def test_compare_refuses_a_field_the_old_commit_lacks():
    with pytest.raises(RuntimeError, match="unknown field"):
        bench.compare("HEAD", "smoke", rev_sets=["train.not_a_field=1"], rounds=1, warmup=0,
                      steps=1)


def test_breakdown_accounts_for_the_step(image_folder):
    b = bench.breakdown("smoke", [f"data.dataset=folder", f"data.root={image_folder}",
                                  "data.test_fraction=0.0"], steps=2, warmup=1)
    assert {"G forward", "G losses", "G backward (through losses, D, G)",
            "G optimiser (Adam)", "EMA of G"} <= set(b["phases_ms"])
    assert "D step" not in b["phases_ms"]  # the smoke recipe has no adversarial term
    # the profiler's scopes cannot hold more time than the steps took
    assert sum(b["phases_ms"].values()) <= b["step_ms"] * 1.05
    assert all(v > 0 for v in b["generator_forward_ms"].values())
    assert b["generator_forward_gflop"]["res_blocks"] > 0 and b["step_gflop"] > 0
    assert all(v > 0 for v in b["io_ms"].values())
    assert "res_blocks" in bench.format_breakdown(b)


@pytest.mark.bench
def test_loop_times_the_step_the_command_and_the_notebook(image_folder):
    sets = [f"data.dataset=folder", f"data.root={image_folder}", "data.test_fraction=0.0",
            "train.log_every=1"]
    b = bench.loop("smoke", sets, steps=4, rounds=1)
    for side in ("step", "train", "notebook"):
        assert len(b["images_per_sec"][side]) == 1 and b["median"][side] > 0, side
    assert b["train_of_step"] == pytest.approx(b["median"]["train"] / b["median"]["step"])
    assert "under papermill" in bench.format_loop(b)


def test_fid_rows_time_both_memory_orders_and_agree():
    rows = bench.fid_rows(n=4, repeats=1)
    assert [r["what"] for r in rows] == ["FID Inception features, channels-last (used)",
                                         "FID Inception features, NCHW"]
    assert all(r["images_per_sec"] > 0 for r in rows)
    assert rows[0]["max_feature_difference"] < 1e-4  # the same arithmetic in another order


# The last commit of the flat layout (one package, no subpackages): its step worker imports
# `paperlib.train` and `paperlib.bench`, which the worker script falls back to.
FLAT_LAYOUT_COMMIT = "39a9c92"


@pytest.mark.bench
def test_compare_still_times_a_commit_of_the_flat_layout():
    result = bench.compare(FLAT_LAYOUT_COMMIT, "smoke", rounds=1, warmup=0, steps=1)
    assert set(result["seconds"]) == {"now", FLAT_LAYOUT_COMMIT}
    assert all(v[0] > 0 for v in result["seconds"].values())


def test_the_matmul_peak_stops_growing_at_its_time_budget():
    from paperlib.tools.bench import matmul_peak

    # a budget no product fits: the smallest size, timed once
    gflops, size = matmul_peak(torch.float32, n=2048, budget=1e-9)
    assert size == 256 and gflops > 0
    gflops, size = matmul_peak(torch.float32, n=256, budget=10.0)
    assert size == 256 and gflops > 0


def test_bench_times_bf16_by_default_only_where_it_is_native(monkeypatch):
    from paperlib.tools import bench

    monkeypatch.setattr(bench, "native_bf16", lambda device="cpu": False)
    assert bench.bench_precisions("auto") == ("fp32",)
    monkeypatch.setattr(bench, "native_bf16", lambda device="cpu": True)
    assert bench.bench_precisions("auto") == ("fp32", "bf16")
    assert bench.bench_precisions("bf16") == ("bf16",)
    with pytest.raises(ValueError, match="fp16"):
        bench.bench_precisions("fp32,fp16")


def test_the_tap_table_times_both_kernels(monkeypatch):
    from paperlib.tools import bench

    rows = bench.tap_rows(channels=(8,), sides=(4,), precisions=("fp32",), batch=2, repeats=1)
    assert len(rows) == 1 and rows[0]["dense_ms"] > 0 and rows[0]["taps_ms"] > 0
    assert "taps/dense" in bench.format_taps(rows)
