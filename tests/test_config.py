"""Tests for src/core/config.py: YAML recipes, overrides, validation, saving and the command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from src.core.config import (
    TTA_VIEWS,
    Config,
    ConfigError,
    add_config_arguments,
    config_from_args,
    load_config,
    make_config,
    read_yaml,
    save_config,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------- loading ---


def test_yaml_values_reach_the_config(tmp_path):
    recipe = write_yaml(
        tmp_path / "r.yaml",
        "model_name: test_efficientnet\nview: all\nimage_size: [64, 32]\nepochs: 3\nlr: 1e-3\n"
        "tta: [identity, vflip]\ntracker: []\nfolds: [0, 2]\n",
    )
    cfg = load_config(recipe)
    assert cfg.model_name == "test_efficientnet"
    assert cfg.view == "all"
    assert cfg.image_size == (64, 32)  # list -> tuple, order kept (height, width)
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr == pytest.approx(1e-3)  # PyYAML reads "1e-3" as a string: must still become a float
    assert isinstance(cfg.lr, float)
    assert cfg.tta == ("identity", "vflip")
    assert cfg.tracker == ()
    assert cfg.folds == (0, 2) and cfg.train_folds == (0, 2)
    # fields not in the recipe keep their defaults
    assert cfg.batch_size == Config().batch_size


def test_cli_style_string_overrides_are_coerced(tmp_path):
    recipe = write_yaml(tmp_path / "r.yaml", "epochs: 10\nimage_size: [128, 128]\n")
    cfg = load_config(
        recipe,
        {
            "epochs": "3",
            "image_size": "64,64",
            "pretrained": "none",
            "tta": "identity,vflip",
            "lr": "2e-4",
            "tracker": "none",
            "folds": "1,3",
        },
    )
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.image_size == (64, 64)
    assert cfg.pretrained is None
    assert cfg.tta == ("identity", "vflip")
    assert cfg.lr == pytest.approx(2e-4)
    assert cfg.tracker == ()
    assert cfg.folds == (1, 3)


def test_override_none_clears_an_optional_tuple(tmp_path):
    recipe = write_yaml(tmp_path / "r.yaml", "image_size: [128, 128]\nfirst_conv_stride: [1, 2]\n")
    assert load_config(recipe).image_size == (128, 128)
    cfg = load_config(recipe, {"image_size": "none", "first_conv_stride": "None"})
    assert cfg.image_size is None and cfg.first_conv_stride is None


def test_no_recipe_means_defaults_plus_overrides():
    cfg = load_config(None, {"epochs": "2"})
    assert cfg == dataclasses.replace(Config(), epochs=2)
    assert load_config(None) == Config()


def test_empty_recipe_is_the_defaults(tmp_path):
    assert load_config(write_yaml(tmp_path / "empty.yaml", "")) == Config()


def test_unknown_key_in_recipe_names_key_and_file(tmp_path):
    recipe = write_yaml(tmp_path / "typo.yaml", "epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert "learning_rate" in str(err.value)
    assert "typo.yaml" in str(err.value)


def test_unknown_override_key_is_refused(tmp_path):
    recipe = write_yaml(tmp_path / "r.yaml", "epochs: 3\n")
    with pytest.raises(ConfigError, match="batchsize"):
        load_config(recipe, {"batchsize": 4})


def test_bad_value_error_names_the_file(tmp_path):
    recipe = write_yaml(tmp_path / "badview.yaml", "view: sideways\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert "badview.yaml" in str(err.value) and "view" in str(err.value) and "sideways" in str(err.value)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"view": "sideways"}, "view"),
        ({"normalize": "minmax"}, "normalize"),
        ({"pool": "max"}, "pool"),
        ({"mix": "cutout"}, "mix"),
        ({"mix_label": "min"}, "mix_label"),
        ({"select_by": "valid_f1"}, "select_by"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"mixed_precision": True}, "mixed_precision"),  # YAML 1.1 reads a bare `no` as a boolean
        ({"view": True}, "view"),  # ... and a bare `on` too
        ({"tta": ["identity", "rotate"]}, "tta"),
        ({"tta": "none"}, "tta"),  # at least one TTA view
        ({"tracker": ["mlflow"]}, "tracker"),
        ({"lr": -1e-4}, "lr"),
        ({"lr": "-1e-4"}, "lr"),
        ({"lr": 0}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"min_lr": -1e-6}, "min_lr"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": "3.5"}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"batch_size": True}, "batch_size"),
        ({"n_folds": 1}, "n_folds"),
        ({"folds": [5]}, "folds"),  # n_folds defaults to 5: folds are 0..4
        ({"folds": [-1]}, "folds"),
        ({"n_folds": 3, "folds": "0,3"}, "folds"),
        ({"hflip_p": 1.5}, "hflip_p"),
        ({"sampler_strength": -0.1}, "sampler_strength"),
        ({"mixup_alpha": 0}, "mixup_alpha"),
        ({"image_size": [64]}, "image_size"),
        ({"image_size": "64,64,3"}, "image_size"),
        ({"image_size": [4, 4]}, "image_size"),
        ({"image_size": [64, 64.5]}, "image_size"),
        ({"first_conv_stride": [0, 2]}, "first_conv_stride"),
        ({"first_conv_stride": [1]}, "first_conv_stride"),
        ({"grad_accum_steps": 0}, "grad_accum_steps"),
        ({"num_workers": -1}, "num_workers"),
        ({"prefetch_factor": 0}, "prefetch_factor"),
        ({"background": "median"}, "background"),
        ({"inject_prob": 1.5}, "inject_prob"),
        ({"inject_rfi_prob": -0.1}, "inject_rfi_prob"),
        ({"inject_rfi_prob": 0.3, "view": "on"}, "inject_rfi_prob"),  # interference needs the OFF observations loaded
        ({"inject_snr": [10, 5]}, "inject_snr"),
        ({"inject_snr": [0, 5]}, "inject_snr"),
        ({"inject_snr": [5]}, "inject_snr"),
        ({"inject_rfi_snr": [500, 10]}, "inject_rfi_snr"),
        ({"inject_rfi_snr": [0, 10]}, "inject_rfi_snr"),
        ({"image_size": 64}, "image_size"),  # not a list
        ({"observation_shape": [3, 256]}, "observation_shape"),  # rows >= 4
        ({"observation_shape": [16, 7]}, "observation_shape"),  # channels >= 8
        ({"observation_shape": [16]}, "observation_shape"),
        ({"observation_shape": "16,256,6"}, "observation_shape"),
        ({"resolution": [0, 18.25]}, "resolution"),
        ({"resolution": [2.79, -1]}, "resolution"),
        ({"resolution": [2.79]}, "resolution"),
        ({"window": "sliding"}, "window"),
        ({"window": "follows_drift", "view": "dedoppler"}, "window"),  # the planes need one path across the cadence
    ],
)
def test_bad_values_raise_config_error_naming_the_field(values, field):
    with pytest.raises(ConfigError) as err:
        make_config(values, "recipe.yaml")
    assert field in str(err.value)
    assert "recipe.yaml" in str(err.value)


def test_unquoted_yaml_on_is_a_clear_error_not_a_crash(tmp_path):
    # `view: on` is the boolean True in YAML 1.1: the recipe must say "on" in quotes
    recipe = write_yaml(tmp_path / "r.yaml", "view: on\n")
    with pytest.raises(ConfigError, match="view"):
        load_config(recipe)


def test_good_values_are_accepted():
    cfg = make_config(
        {
            "n_folds": 3,
            "folds": [0, 2],
            "image_size": [8, 8],
            "first_conv_stride": [1, 2],
            "hflip_p": 0,
            "vflip_p": 1,
            "lr": 1,
            "mixed_precision": "bf16",
        }
    )
    assert cfg.folds == (0, 2) and cfg.image_size == (8, 8) and cfg.first_conv_stride == (1, 2)
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]
    assert cfg.epochs == Config().epochs


def test_config_constructor_validates_too():
    with pytest.raises(ConfigError, match="view"):
        Config(view="sideways")
    with pytest.raises(ConfigError, match="mixed_precision"):
        dataclasses.replace(Config(), mixed_precision="fp8")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2, 3]\n", "mapping"),
        ("epochs: [unclosed\n", "YAML"),
    ],
)
def test_read_yaml_rejects_non_mappings_and_bad_yaml(tmp_path, text, message):
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    assert message in str(err.value) and "bad.yaml" in str(err.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.yaml"):
        load_config(tmp_path / "nothere.yaml")


# ------------------------------------------------------------- saving ---


def test_to_dict_is_plain_yaml():
    cfg = Config(image_size=(64, 32), folds=(0, 1))
    values = cfg.to_dict()
    assert values["image_size"] == [64, 32] and values["tta"] == list(TTA_VIEWS)
    assert set(values) == {f.name for f in dataclasses.fields(Config)}
    assert not any(isinstance(v, tuple) for v in values.values())
    assert yaml.safe_load(yaml.safe_dump(values)) == values


@pytest.mark.parametrize(
    "cfg",
    [
        Config(),  # view "on" and mixed_precision "no" must survive as strings, not YAML booleans
        Config(
            view="channels",
            image_size=(64, 32),
            folds=(1,),
            first_conv_stride=(1, 2),
            pool="gem",
            tta=("identity", "vflip"),
            tracker=(),
            run_name="abc",
            pretrained="/w/x.safetensors",
            lr=3e-4,
            mixed_precision="bf16",
            warmup_epochs=0.5,
            mix="both",
            mix_label="or",
        ),
    ],
)
def test_save_config_round_trip(tmp_path, cfg):
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    loaded = load_config(path)
    assert loaded == cfg
    assert loaded.view == cfg.view and loaded.mixed_precision == cfg.mixed_precision


# ------------------------------------------------------------ command line ---


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(argv)


def test_cli_flags_override_defaults():
    cfg = config_from_args(
        parse(
            [
                "--data-dir",
                "x",
                "--image-size",
                "64,64",
                "--tracker",
                "none",
                "--epochs",
                "3",
                "--tta",
                "identity,vflip",
                "--model-name",
                "test_vit",
            ]
        )
    )
    assert cfg.data_dir == "x"
    assert cfg.image_size == (64, 64)
    assert cfg.tracker == ()
    assert cfg.epochs == 3
    assert cfg.tta == ("identity", "vflip")
    assert cfg.model_name == "test_vit"


def test_cli_flags_not_given_leave_recipe_values(tmp_path):
    recipe = write_yaml(tmp_path / "r.yaml", "epochs: 7\nview: all\nbatch_size: 4\n")
    args = parse(["--config", str(recipe), "--batch-size", "8"])
    assert not hasattr(args, "epochs")  # unset flags are absent, not None: they must not clobber the recipe
    cfg = config_from_args(args)
    assert cfg.epochs == 7 and cfg.view == "all" and cfg.batch_size == 8


def test_every_field_has_a_flag():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for f in dataclasses.fields(Config):
        assert "--" + f.name.replace("_", "-") in flags


def test_data_geometry_defaults_are_kaggles_and_flags_set_it(tmp_path):
    from src.core.cadence import CADENCE_SHAPE, DF_HZ, DT_S

    cfg = Config()
    assert cfg.observation_shape == CADENCE_SHAPE[1:] == (273, 256)
    assert cfg.resolution == (DF_HZ, DT_S) and cfg.window == "fixed"
    assert cfg.cadence_shape == CADENCE_SHAPE
    cli = config_from_args(parse(["--observation-shape", "16,256", "--window", "follows_drift"]))
    assert cli.observation_shape == (16, 256) and cli.cadence_shape == (6, 16, 256)
    assert cli.window == "follows_drift" and isinstance(cli.observation_shape[0], int)
    recipe = write_yaml(tmp_path / "r.yaml", "observation_shape: [16, 128]\nresolution: [22.35, 18.25]\n")
    cfg = load_config(recipe, {"observation_shape": "32,64"})
    assert cfg.observation_shape == (32, 64) and cfg.resolution == (22.35, 18.25)
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg
    # a config saved before these fields existed means Kaggle geometry
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("observation_shape", "resolution", "window")}
    assert make_config(old).observation_shape == (273, 256) and make_config(old).window == "fixed"


def test_cli_bad_value_is_a_config_error():
    with pytest.raises(ConfigError, match="view"):
        config_from_args(parse(["--view", "sideways"]))


# ------------------------------------------------------------ recipes ---


def test_there_are_recipes():
    assert RECIPES, "configs/*.yaml not found"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    cfg = load_config(recipe)
    raw = yaml.safe_load(recipe.read_text()) or {}
    for key, value in raw.items():  # what the recipe says is what the Config holds
        got = getattr(cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
