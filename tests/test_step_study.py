"""results/step-study: the committed step study rebuilds from its measurements, and the
findings that chose the main recipe hold in them."""
from pathlib import Path

from paperlib.study import hue_study as hs
from paperlib.study.registry import STEP_ARMS

FOLDER = Path(__file__).resolve().parents[1] / "results" / "step-study"


def test_the_committed_step_study_rebuilds_and_shows_what_chose_the_main_recipe(tmp_path):
    """The summary rebuilt from the runs' measurements is the committed one. The arm the main
    recipe is made of ends, on both seeds, within the baseline's range or better on region
    dE00, dH* and gain, with the weakest probe angle's map entry over 0.7; without the hue turn
    the weakest angle stays under 0.7 on both seeds."""
    csv, md, _ = hs.summarise(FOLDER, tmp_path)
    assert md.read_text() == (FOLDER / hs.MD).read_text()
    assert csv.read_text() == (FOLDER / hs.CSV).read_text()
    t = hs.arm_table(hs.curve_rows(FOLDER)).set_index(["arm", "seed"])
    assert set(STEP_ARMS) <= {a for a, _ in t.index}
    base = t.loc["region-grid8-time"]
    for seed in (0, 1):
        chosen, plain = t.loc[("step-res256-long-hue", seed)], t.loc[("step-res256-long", seed)]
        assert chosen["steps"] == plain["steps"] == 2000
        assert chosen["region_de"] <= base["region_de"].max()
        assert chosen["region_dh"] <= base["region_dh"].max()
        assert chosen["ref_gain_de"] >= base["ref_gain_de"].min()
        assert chosen["map_weakest_angle"] > 0.7 > plain["map_weakest_angle"]

