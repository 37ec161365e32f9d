import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paperlib.evaluation import evaluate as ev
from paperlib.evaluation import fid
from paperlib.config import get_profile, override
from paperlib.evaluation.evaluate import derangement, other_reference_index
from paperlib.evaluation.metrics import attention_hit_rate
from paperlib.core.color import rotate_hue
from conftest import ConstantColour, ReferenceCopier, StandIn


def test_derangement_has_no_fixed_point_and_is_a_permutation():
    for n in (2, 3, 10, 101):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n))
        assert not (p == torch.arange(n)).any()


def test_other_reference_is_a_third_image():
    for n in (3, 4, 7, 30):
        cross = derangement(n, seed=n)
        other = other_reference_index(cross)
        assert sorted(other.tolist()) == list(range(n))  # every reference used once
        assert not (other == torch.arange(n)).any() and not (other == cross).any()


def test_attention_hit_rate_counts_only_valid_positions():
    corr = torch.tensor([[1, 0, 3, 2]])
    att = torch.nn.functional.one_hot(corr, 4).float()
    mask = torch.tensor([[True, True, True, False]])
    assert attention_hit_rate(att, corr, mask) == 1.0
    att[0, 0] = torch.tensor([1.0, 0, 0, 0])  # wrong for position 0
    assert abs(attention_hit_rate(att, corr, mask) - 2 / 3) < 1e-6


def test_kid_subsets_smaller_than_the_set_have_a_spread():
    assert [fid.kid_subset_size(n) for n in (2, 3, 5, 24, 2000)] == [2, 2, 2, 12, 1000]
    with pytest.raises(ValueError, match="n=1"):
        fid.kid_subset_size(1)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(24, 8)), rng.normal(0.5, 1, size=(24, 8))
    _, sd_whole = fid.kid(a, b, subset_size=24)  # every subset is the whole set
    assert sd_whole == pytest.approx(0, abs=1e-12)
    mean, sd = fid.kid(a, b, subset_size=fid.kid_subset_size(24))
    assert sd > 1e-3 and mean > 0


# --- does the output follow its reference? ---------------------------------------------


@pytest.fixture
def folder_config(image_folder):
    """Smoke profile (32 px) on conftest's 24 drawings, about half of them held out."""
    return override(get_profile("smoke"), {"data.dataset": "folder", "data.root": str(image_folder),
                                           "data.test_fraction": 0.5})


def test_reference_use_tells_a_reference_copier_from_a_model_ignoring_it(folder_config):
    copier, constant = ReferenceCopier().train(), ConstantColour().eval()
    follow = ev.reference_use(copier, folder_config.data)
    ignore = ev.reference_use(constant, folder_config.data)
    assert follow["ref_gain_de_self"] > 5
    assert follow["palette_follow_cross"] < 0.6
    assert abs(ignore["ref_gain_de_self"]) < 0.5
    assert 0.9 < ignore["palette_follow_cross"] < 1.1
    assert ignore["region_de_self"] > follow["region_de_self"]
    for r in (follow, ignore):
        assert math.isnan(r["attention_hit_rate"])  # no attention in these models
        assert all(isinstance(v, float) for v in r.values())
        assert r["region_dl_self"] >= 0 and r["region_dc_self"] >= 0 and r["region_dh_self"] >= 0
        # the mean over all regions lies between those over the small and the large ones
        parts = (r["region_de_small_self"], r["region_de_large_self"])
        assert min(parts) <= r["region_de_self"] <= max(parts)
    # Run in eval mode, previous mode restored.
    assert not any(copier.modes) and copier.training
    assert not any(constant.modes) and not constant.training


def test_reference_or_memory_tells_a_memoriser_from_a_reference_user(folder_config, monkeypatch):
    """A generator painting the unjittered image I from memory scores 0 against I and the
    jitter's own error against a(I); one painting a(I) exactly, the reverse."""
    inputs = ev.generate_in_eval_mode(ReferenceCopier(), folder_config.data, 0, 0, "test", 48,
                                       attention=False)
    for painted, zero_row, jitter_like_row in (("image", 2, 1), ("target", 1, 2)):
        monkeypatch.setattr(ev, "generate_in_eval_mode",
                            lambda *a, **k: {**inputs, "self": inputs[painted]})
        rows = ev.reference_or_memory(None, folder_config.data)
        assert [r["compared"] for r in rows] == [label for label, _, _ in ev.MEMORY_PAIRS]
        jitter = rows[0]
        assert jitter["region_de"] > 3 and jitter["region_dh"] > 0  # a() moves the colours
        for k in ("region_de", "region_dl", "region_dc", "region_dh"):
            assert rows[zero_row][k] == pytest.approx(0, abs=1e-6), (painted, k)
            assert rows[jitter_like_row][k] == pytest.approx(jitter[k]), (painted, k)


def test_reference_use_reports_scft_attention_on_a_few_images(folder_config):
    from paperlib.core.model import Generator

    G = Generator(folder_config.model).train()
    r = ev.reference_use(G, folder_config.data, n=6, split="train")
    assert 0 <= r["attention_hit_rate"] <= 1
    assert G.training


def pixel_features(images, *args, **kwargs):
    """Stand-in for Inception features: 4x4 average colours (N, 48)."""
    return F.adaptive_avg_pool2d(images.float(), 4).flatten(1).double().numpy()


def test_evaluate_writes_reference_metrics_and_kid_spread(folder_config, tmp_path, monkeypatch):
    from paperlib.core.model import Generator
    from paperlib.training.snapshot import save_snapshot

    monkeypatch.setattr(fid, "shared_inception", lambda *a, **k: None)
    monkeypatch.setattr(fid, "activations", pixel_features)
    monkeypatch.setattr(fid, "reference_activations", lambda key, compute: compute())
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_snapshot(Generator(folder_config.model), folder_config, 3, run / "snapshot-final.pt")
    ev.evaluate(run, progress=False, limit=8)
    ev.evaluate(run, progress=False, limit=8, no_reference=True)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for ref in ("image", "zero"):
        values = {r["metric"]: r["value"] for r in rows if r["reference"] == ref}
        for m in ("ref_gain_de_self", "palette_follow_cross", "region_dl_self", "region_dc_self",
                  "region_dh_self", "region_de_self", "palette_cross", "kid_cross_sd"):
            assert m in values and math.isfinite(values[m]), (ref, m)
        assert values["kid_cross_sd"] > 0 and values["kid_self_sd"] > 0
    zero = {r["metric"]: r["value"] for r in rows if r["reference"] == "zero"}
    assert zero["ref_gain_de_self"] == 0.0


def test_without_a_reference_the_two_settings_share_one_inception_pass(folder_config, tmp_path,
                                                                       monkeypatch):
    """With the zero reference the self and cross outputs are the same images (each the sketch
    coloured alone): their features are taken once, and the two settings' FID and KID agree."""
    from paperlib.core.model import Generator
    from paperlib.data.datasets import build_dataset
    from paperlib.training.snapshot import save_snapshot

    passes = []
    monkeypatch.setattr(fid, "shared_inception", lambda *a, **k: None)
    monkeypatch.setattr(fid, "activations", lambda images, *a, **k: passes.append(len(images))
                        or pixel_features(images))
    monkeypatch.setattr(fid, "reference_activations", lambda key, compute: compute())
    run = tmp_path / "run"
    torch.manual_seed(0)
    G = Generator(folder_config.model).eval()
    save_snapshot(G, folder_config, 3, run / "snapshot-final.pt")
    ev.evaluate(run, progress=False, limit=8, no_reference=True)
    assert passes == [8, 8]  # the real images, then the outputs once
    zero = {r["metric"]: r["value"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    for cross, self_ in (("fid_cross", "fid_self"), ("kid_cross", "kid_self"),
                         ("kid_cross_sd", "kid_self_sd")):
        assert zero[cross] == zero[self_]
    ds = ev.first_n(build_dataset(folder_config.data, "test"), 8)
    out = ev.generate(G, ds, no_reference=True, data_cfg=folder_config.data, progress=False)
    with torch.no_grad():
        alone = G(out["sketch"], None)[0].float()
    assert torch.equal(out["cross"], out["self"]) and torch.allclose(out["cross"], alone, atol=1e-5)


def test_read_metrics_refuses_a_filter_it_does_not_have(tmp_path):
    """A misspelt filter is an error naming it, never dropped (which would return the rows
    it was meant to exclude)."""
    from paperlib.training.snapshot import FINAL

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 3}, run / FINAL)
    row = {"metric": "fid_cross", "value": 1.0, "split": "test", "reference": "zero",
           "dataset": "folder", "step": 3}
    (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    assert ev.read_metrics(run, no_reference=True) == [row]
    assert ev.read_metrics(run) == []  # the image-reference rows: none
    with pytest.raises(ValueError, match="'no_refrence'"):
        ev.read_metrics(run, no_refrence=True)
    with pytest.raises(ValueError, match="'limit'"):
        ev.read_metrics(run, limit=8)


def test_real_statistics_key_names_the_faces_that_a_split_holds():
    from dataclasses import replace

    from paperlib.config import get_profile
    from paperlib.evaluation.evaluate import real_stats_key

    openmoji = get_profile("mini").data
    key = real_stats_key(openmoji, "test", 445)
    # openmoji keeps the key its cached statistics were stored under
    assert set(key) == {"dataset", "root", "split", "resolution", "n", "sketch_source"}
    faces = replace(openmoji, dataset="faces")
    fewer = replace(faces, faces_test_per_style=100)
    assert real_stats_key(faces, "test", 64) != real_stats_key(fewer, "test", 64)
    # the smoke profile's smaller Inception input has statistics of its own
    smoke = get_profile("smoke").data
    assert real_stats_key(smoke, "test", 3)["fid_input"] == 75
    assert real_stats_key(replace(smoke, fid_input=299), "test", 3) == {
        k: v for k, v in real_stats_key(smoke, "test", 3).items() if k != "fid_input"}


def test_the_hue_probe_gives_the_identity_for_a_copier_and_zero_for_memory(folder_config):
    """With no warp and no jitter the reference is the ground truth: a model that copies it
    carries both chroma axes over (the identity), whatever the turn; one constant colour
    follows neither (a zero map)."""
    data = override(folder_config, {"data.tps_scale": 0.0, "data.color_jitter": 0.0}).data
    copier = ReferenceCopier().train()
    r = ev.hue_transfer(copier, data, n=8, split="train")
    m = np.array([[r["transfer_aa"], r["transfer_ab"]], [r["transfer_ba"], r["transfer_bb"]]])
    np.testing.assert_allclose(m, np.eye(2), atol=0.02)
    assert r["region_de_rot"] == pytest.approx(0, abs=0.05) and copier.training
    constant = ev.hue_transfer(ConstantColour(), data, n=8, split="train")
    for k in ("transfer_aa", "transfer_ab", "transfer_ba", "transfer_bb"):
        assert constant[k] == pytest.approx(0, abs=1e-6)
    assert constant["region_dh_rot"] > 5


class QuarterTurner(StandIn):
    """Outputs its reference with the hue turned a further 90 degrees: it follows the
    reference, but along the wrong axes."""

    def colour(self, sketch, reference):
        return rotate_hue(reference, torch.full((reference.shape[0],), 90.0))


def test_the_hue_probe_fits_one_map_per_angle(folder_config):
    """Per angle, every image is turned by that angle alone: a copier gives the identity at
    each, a model that turns hue a further 90 degrees gives that rotation's matrix at each
    (within sRGB's clipping), and
    a constant colour gives zero at each."""
    data = override(folder_config, {"data.tps_scale": 0.0, "data.color_jitter": 0.0}).data
    copier = ev.hue_transfer(ReferenceCopier(), data, n=8, split="train")
    turner = ev.hue_transfer(QuarterTurner(), data, n=8, split="train")
    constant = ev.hue_transfer(ConstantColour(), data, n=8, split="train")
    for angle in ev.HUE_PROBE_ANGLES:
        keys = ev.map_keys(f"_{angle:.0f}")
        np.testing.assert_allclose([copier[k] for k in keys], [1, 0, 0, 1], atol=0.02)
        # the rotation [[0, -1], [1, 0]], its entries shrunk where turned colours leave sRGB
        aa, ab, ba, bb = (turner[k] for k in keys)
        assert abs(aa) < 0.25 and abs(bb) < 0.25 and ab < -0.6 and ba > 0.6
        np.testing.assert_allclose([constant[k] for k in keys], 0, atol=1e-6)


def test_an_evaluation_on_other_data_goes_to_the_transfer_file(folder_config, tmp_path, monkeypatch):
    """Scored on another image root (another dataset, or OpenMoji's other sketches), the rows go
    to metrics_transfer.jsonl and name both data; the run's own tables never see them."""
    import shutil

    from paperlib.core.model import Generator
    from paperlib.training.snapshot import save_snapshot

    monkeypatch.setattr(fid, "shared_inception", lambda *a, **k: None)
    monkeypatch.setattr(fid, "activations", pixel_features)
    monkeypatch.setattr(fid, "reference_activations", lambda key, compute: compute())
    other = tmp_path / "other"
    shutil.copytree(folder_config.data.root, other)
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_snapshot(Generator(folder_config.model), folder_config, 3, run / "snapshot-final.pt")
    rows = ev.evaluate(run, root=str(other), progress=False, limit=8)
    assert not (run / "metrics.jsonl").exists() and not list(run.glob("per_image*"))
    stored = [json.loads(x) for x in (run / ev.TRANSFER_FILE).read_text().splitlines()]
    assert stored == rows and {r["trained_on"] for r in rows} == {f"folder/{folder_config.data.root}"}
    ev.evaluate(run, progress=False, limit=8)  # its own data: metrics.jsonl
    assert len((run / "metrics.jsonl").read_text().splitlines()) == len(rows)
    assert not list(run.glob("per_image*"))  # a shorter check than the profile's evaluation
    own = ev.evaluate(run, progress=False)
    # and the per-image values the claims' intervals resample, which give its metrics back
    from paperlib.evaluation import intervals

    monkeypatch.setattr(ev, "generate", lambda *a, **k: pytest.fail("recomputed"))
    values = intervals.run_values(run)
    every = np.arange(len(values["de_sum"]))
    for r in own:
        if r["metric"] in intervals.PER_IMAGE_METRICS:
            assert intervals.statistic(values, every, r["metric"]) == pytest.approx(r["value"], abs=1e-9)


def test_evaluate_keeps_the_cross_outputs_activations_for_kid_intervals(folder_config, tmp_path,
                                                                          monkeypatch):
    """The profile's evaluation stores its cross outputs' activations (float16) with the key of
    the real images' cached ones: together they give its FID again; a newer snapshot or a
    cleared cache leaves the run without them, as runs evaluated before they were kept are."""
    import shutil

    from paperlib.core.model import Generator
    from paperlib.evaluation import intervals
    from paperlib.evaluation.per_image import activations_file
    from paperlib.training.snapshot import save_snapshot

    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fid, "shared_inception", lambda *a, **k: None)
    monkeypatch.setattr(fid, "activations", pixel_features)
    run = tmp_path / "run"
    torch.manual_seed(0)
    save_snapshot(Generator(folder_config.model), folder_config, 3, run / "snapshot-final.pt")
    assert intervals.run_activations(run) is None  # not evaluated yet
    outputs, generate = [], ev.generate
    monkeypatch.setattr(ev, "generate",
                        lambda *a, **k: outputs.append(generate(*a, **k)) or outputs[-1])
    rows = {r["metric"]: r["value"] for r in ev.evaluate(run, progress=False)}
    with np.load(activations_file(run)) as z:
        assert z["acts"].dtype == np.float16
    acts, real = intervals.run_activations(run)
    np.testing.assert_allclose(acts, pixel_features(outputs[0]["cross"]), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(real, pixel_features(outputs[0]["image"]), rtol=1e-6, atol=1e-6)
    assert fid.fid_from_activations(acts, real) == pytest.approx(rows["fid_cross"], rel=1e-3)
    shutil.rmtree(tmp_path / "cache")
    assert intervals.run_activations(run) is None
    save_snapshot(Generator(folder_config.model), folder_config, 5, run / "snapshot-final.pt")
    ev.evaluate(run, progress=False)  # computes the real ones again
    assert intervals.run_activations(run) is not None
    save_snapshot(Generator(folder_config.model), folder_config, 7, run / "snapshot-final.pt")
    assert intervals.run_activations(run) is None  # the stored ones are step 5's


def test_data_identity_ignores_the_sketch_source_where_there_is_no_line_art():
    cfg = get_profile("smoke").data
    moji = ev.data_identity(cfg)
    assert ev.data_identity(ev.evaluation_data(get_profile("smoke"), sketch_source="xdog")) != moji
    faces = ev.evaluation_data(get_profile("smoke"), dataset="faces")
    assert ev.data_identity(faces) == ev.data_identity(
        ev.evaluation_data(get_profile("smoke"), dataset="faces", sketch_source="xdog"))


def test_read_metrics_reads_other_data_from_the_transfer_file(tmp_path):
    """The run's own rows by default; a sketch source or dataset other than its own selects the
    transfer file's rows for that data, and those alone."""
    from paperlib.config import to_dict
    from paperlib.training.snapshot import FINAL

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(to_dict(get_profile("smoke"))))
    torch.save({"step": 3}, run / FINAL)
    base = {"metric": "fid_cross", "split": "test", "reference": "image", "step": 3}
    own = {**base, "value": 1.0, "dataset": "openmoji"}  # an older row: no sketch_source
    (run / "metrics.jsonl").write_text(json.dumps(own) + "\n")
    xdog = {**base, "value": 2.0, "dataset": "openmoji", "sketch_source": "xdog"}
    faces = {**base, "value": 3.0, "dataset": "faces", "sketch_source": "xdog"}
    (run / ev.TRANSFER_FILE).write_text(json.dumps(xdog) + "\n" + json.dumps(faces) + "\n")
    assert ev.read_metrics(run) == [own]
    assert ev.read_metrics(run, sketch_source="line") == [own]
    assert ev.read_metrics(run, dataset="openmoji") == [own]
    assert ev.read_metrics(run, sketch_source="xdog") == [xdog]
    assert ev.read_metrics(run, dataset="faces") == [faces]


def test_the_sketch_source_selects_rows_only_where_there_are_two_kinds(tmp_path):
    """A faces run has XDoG sketches only: asking for line art or XDoG reads its own rows."""
    from paperlib.config import to_dict
    from paperlib.training.snapshot import FINAL

    run = tmp_path / "run"
    run.mkdir()
    faces = override(get_profile("smoke"), {"data.dataset": "faces"})
    (run / "config.json").write_text(json.dumps(to_dict(faces)))
    torch.save({"step": 3}, run / FINAL)
    row = {"metric": "fid_cross", "value": 1.0, "split": "test", "reference": "image",
           "step": 3, "dataset": "faces", "sketch_source": "xdog"}
    (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    assert ev.read_metrics(run, sketch_source="line") == [row]
    assert ev.read_metrics(run, dataset="faces", sketch_source="xdog") == [row]
    moji = {**row, "value": 2.0, "dataset": "openmoji", "sketch_source": "line"}
    moji_x = {**moji, "value": 3.0, "sketch_source": "xdog"}
    (run / ev.TRANSFER_FILE).write_text(json.dumps(moji) + "\n" + json.dumps(moji_x) + "\n")
    assert ev.read_metrics(run, dataset="openmoji", sketch_source="xdog") == [moji_x]
    # OpenMoji from a faces run without a sketch source: the nominal one, as evaluate takes it
    assert ev.read_metrics(run, dataset="openmoji") == [moji]
