"""study.fp32_check: the float32 main model against the committed bf16 table."""
import json

import pandas as pd
import pytest

from paperlib.study import fp32_check, registry
from paperlib.training.checkpoint import recorded_machine, recorded_precision


def long_rows(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"seed": s, "metric": m, "value": v}
                         for m, vs in values.items() for s, v in enumerate(vs)])


def test_the_difference_is_counted_in_the_larger_seed_spread():
    bf16 = pd.Series({"region_de_self": 13.0, "region_de_self_sd": 0.5,
                      "fid_cross": 100.0, "fid_cross_sd": 1.0})
    fp32 = long_rows({"region_de_self": [13.5, 14.5], "fid_cross": [90.0, 92.0]})
    table = fp32_check.comparison(bf16, fp32, seeds=(0, 1)).set_index("metric")
    region = table.loc["region_de_self"]
    assert region["fp32_mean"] == pytest.approx(14.0)
    assert region["fp32_sd"] == pytest.approx(0.7071, abs=1e-4)  # the larger spread
    assert region["difference_in_sd"] == pytest.approx(1.0 / 0.7071, abs=1e-3)
    assert region["within_spread"]
    fid = table.loc["fid_cross"]
    assert fid["difference"] == pytest.approx(-9.0) and not fid["within_spread"]
    assert list(table.columns[:4]) == ["bf16_mean", "bf16_sd", "fp32_mean", "fp32_sd"]
    assert fid["fp32_seed0"] == 90.0 and fid["fp32_seed1"] == 92.0


def test_the_committed_tables_have_the_main_models_row():
    for dataset in ("openmoji", "faces"):
        row = fp32_check.committed_main("mini", dataset)
        assert row["region_de_self"] > 0 and row["seeds"] >= 2  # a spread needs two seeds
    # OpenMoji's committed tables are the main recipe's reproduction, with every seed
    assert fp32_check.committed_main("mini", "openmoji")["seeds"] == len(registry.SEEDS)


def test_the_float32_run_is_the_main_model_in_float32():
    main = registry.run_config("mini", registry.MAIN, 0)
    fp32 = registry.run_config("mini", fp32_check.FP32_RUN, 0)
    assert fp32.train.precision == "fp32"
    from dataclasses import replace
    assert replace(fp32, train=replace(fp32.train, precision=main.train.precision)) == main


def test_config_json_records_the_machine_and_precision(tmp_path):
    assert recorded_machine(tmp_path) == {} and recorded_precision(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps(
        {"train": {"precision": "fp32"}, "machine": {"device": "AMD EPYC", "precision": "fp32"}}))
    assert recorded_machine(tmp_path)["device"] == "AMD EPYC"
    assert recorded_precision(tmp_path) == "fp32"
    (tmp_path / "config.json").write_text("{not json")
    assert recorded_machine(tmp_path) == {} and recorded_precision(tmp_path) is None
