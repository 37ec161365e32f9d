import dataclasses

import pytest

from paperlib.config import check_config, from_dict, get_profile, mini, override, paper, smoke, to_dict


def test_profiles_are_frozen_and_built_by_replace():
    c = paper()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.train.batch_size = 3
    assert c.train.batch_size == 16 and c.data.resolution == 256 and c.model.width == 1.0
    assert c.loss.perceptual_net == "vgg19"
    assert mini().profile == "mini" and smoke().profile == "smoke"


def test_paper_weights_are_the_papers():
    l = paper().loss
    assert (l.lambda_tr, l.lambda_adv, l.lambda_rec, l.lambda_perc, l.lambda_style) == (1, 1, 30, 0.01, 50)
    assert l.margin == 12
    t = paper().train
    assert (t.lr_g, t.lr_d, tuple(t.betas), t.epochs) == (1e-4, 2e-4, (0.5, 0.999), 200)


def test_override_parses_types_and_rejects_unknown_keys():
    c = override(mini(), ["model.aggregation=add", "train.max_steps=7", "data.skip_bad=true",
                          "train.betas=0.9,0.99", "loss.lambda_rec=3"])
    assert c.model.aggregation == "add" and c.train.max_steps == 7 and c.data.skip_bad is True
    assert c.train.betas == (0.9, 0.99) and c.loss.lambda_rec == 3.0
    assert mini().model.aggregation == "scft"  # the original is untouched
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        override(mini(), ["model.nope=1"])
    with pytest.raises(ValueError, match="key=value"):
        override(mini(), ["model.width"])
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")


def test_config_round_trips_through_json_dict():
    c = override(smoke(), ["model.aggregation=adain"])
    assert from_dict(to_dict(c)) == c


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("PAPERLIB_PROFILE", "smoke")
    assert get_profile().profile == "smoke"
    monkeypatch.delenv("PAPERLIB_PROFILE")
    assert get_profile().profile == "mini"


def test_the_opt_in_options_are_off_in_every_profile():
    from paperlib.config import PROFILES, check_config

    for name, build in PROFILES.items():
        c = build()
        assert c.data.hue_rotation == 0.0 and c.model.aggregation == "scft", name
        check_config(c)


@pytest.mark.parametrize("value", [-1.0, 181.0, float("nan")])
def test_hue_rotation_out_of_range_is_refused(value):
    from paperlib.config import check_config

    with pytest.raises(ValueError) as e:
        check_config(override(smoke(), {"data.hue_rotation": value}))
    assert "data.hue_rotation" in str(e.value) and repr(value) in str(e.value)


def test_hue_rotation_in_range_is_accepted_and_parsed():
    from paperlib.config import check_config

    for text in ("0", "30", "180"):
        c = check_config(override(smoke(), [f"data.hue_rotation={text}"]))
        assert c.data.hue_rotation == float(text)


@pytest.mark.parametrize("key,value", [("data.val_holdout", "-1"), ("data.val_holdout", "2.5"),
                                       ("loss.lambda_ab", "-0.5")])
def test_hue_study_fields_refuse_impossible_values(key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        check_config(override(get_profile("smoke"), [f"{key}={value}"]))


@pytest.mark.parametrize("value", ["74", "0", "-299"])
def test_an_inception_input_it_cannot_take_is_refused(value):
    with pytest.raises(ValueError, match=r"data\.fid_input=.*at least 75"):
        check_config(override(get_profile("smoke"), [f"data.fid_input={value}"]))


def test_only_the_smoke_profile_shrinks_the_inception_input():
    assert [get_profile(p).data.fid_input for p in ("paper", "mini", "smoke")] == [299, 299, 75]
