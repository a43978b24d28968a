"""Typed config values: what ``--set``/YAML values each annotation accepts, and the one-line errors."""

from __future__ import annotations

import pytest
import yaml

from busray.config import config_from_dict, config_to_dict, load_config
from busray.configtools import ConfigError, blame


def _value(key: str, cfg) -> object:
    group, name = key.split(".")
    return getattr(getattr(cfg, group), name)


@pytest.mark.parametrize("override, expected", [
    ("model.tau=0.5", 0.5),
    ("model.tau=1", 1.0),                          # an int where a float goes
    ("train.epochs=3", 3),
    ("model.hmsf=false", False),
    ("model.encoder=efficientnet_b0", "efficientnet_b0"),
    ("model.encoder=off", "off"),                  # YAML 1.1 reads off as a boolean: back to the word
    ("model.decoder_channels=[64, 32, 16, 8]", [64, 32, 16, 8]),
    ("data.limit_per_class=null", None),           # int | None
    ("data.limit_per_class=5", 5),
    ("loss.class_weights=[1, 2, 3.5]", [1.0, 2.0, 3.5]),  # list[float] | None: ints become floats
    ("train.lr_floor_fraction=0.03", 0.03),
    ("train.channels_last=auto", None),            # bool | None with none_word="auto"
    ("train.channels_last=null", None),
    ("train.channels_last=true", True),
])
def test_accepted_values(override, expected):
    value = _value(override.split("=")[0], load_config(None, [override]))
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("override, message", [
    ("model.tau=true", "model.tau: expected a number, got True"),
    ("model.tau=.nan", "model.tau: nan is not a finite number"),
    ("model.tau=abc", "model.tau: expected a number, got 'abc'"),
    ("train.epochs=2.5", "train.epochs: expected an integer, got 2.5"),
    ("train.epochs=true", "train.epochs: expected an integer, got True"),
    ("model.hmsf=1", "model.hmsf: expected true or false, got 1"),
    ("model.encoder=[a]", "model.encoder: expected a string, got ['a']"),
    ('model.encoder="a\\0b"', "model.encoder: contains a NUL character"),
    ("model.decoder_channels=7", "model.decoder_channels: expected a list, got 7"),
    ("model.decoder_channels=[64, x, 16, 8]", "model.decoder_channels[1]: expected an integer, got 'x'"),
    ("data.limit_per_class=many", "data.limit_per_class: expected an integer, got 'many'"),
    ("loss.class_weights=[1, true, 1]", "loss.class_weights[1]: expected a number, got True"),
    ("train.channels_last=fast", "train.channels_last: expected auto, true or false, got 'fast'"),
])
def test_refused_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value) == message


def test_a_saved_config_reads_back_equal():
    cfg = load_config(None, ["model.tau=0.9", "loss.class_weights=[1, 2, 3]", "data.limit_per_class=4",
                             "train.channels_last=auto"])
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("override, hint", [
    ("model.tua=1", "did you mean 'model.tau'?"),         # two letters swapped
    ("trian.epochs=1", "did you mean 'train'?"),
    ("train.epoch=1", "did you mean 'train.epochs'?"),    # a letter missing
    ("loss.wseg=1", "did you mean 'loss.w_seg'?"),
    ("data.image_szie=64", "did you mean 'data.image_size'?"),
    ("model.xyz=1", None),                                # nothing close: no guess, the list only
])
def test_an_unknown_key_suggests_the_closest_one(override, hint):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    key = override.split("=")[0] if not override.startswith("trian") else "trian"
    assert message.startswith(f"unknown config key '{key}'") and "(known: " in message
    assert (hint in message) if hint else ("did you mean" not in message)


def test_run_groups_are_the_config_groups():
    import dataclasses

    from busray.config import Config
    from busray.configtools import RUN_GROUPS
    assert RUN_GROUPS == tuple(f.name for f in dataclasses.fields(Config))


@pytest.mark.parametrize("command, content, message", [
    ("train", {"name": "s", "base": {}, "space": {}}, "a sweep file, not a run config file: busray sweep"),
    ("train", {"name": "a", "variants": {"v": {}}}, "an ablation file, not a run config file: busray ablate"),
    ("sweep", {"name": "a", "kind": "ablation", "variants": {"v": {}}}, "an ablation file, not a sweep file"),
    ("ablate", {"name": "s", "num_trials": 2}, "a sweep file, not an ablation file: busray sweep"),
    ("sweep", {"train": {"epochs": 2}}, "a run config file, not a sweep file: busray train --config"),
    ("ablate", {"model": {"tau": 0.5}}, "a run config file, not an ablation file: busray train --config"),
])
def test_a_file_of_another_kind_names_the_command_that_runs_it(tmp_path, command, content, message):
    from busray.experiment import load_ablation_spec
    from busray.experiment import load_sweep_spec

    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(content))
    load = {"train": lambda p: load_config(p), "sweep": load_sweep_spec, "ablate": load_ablation_spec}[command]
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: {message}") and str(path) in str(err.value).split("busray")[-1]


@pytest.mark.parametrize("message, overrides, source", [
    ("model.tau: 9.0 is outside [0.0, 2.0]", ["model.tau=9"], "--set model.tau=9"),
    ("model.tau: 9.0 is outside [0.0, 2.0]", ["model.tau=0.5", "model.tau=9"], "--set model.tau=9"),  # the last
    ("model.tau: 9.0 is outside [0.0, 2.0]", ["model={tau: 9}"], "--set model={tau: 9}"),  # a group above it
    ("space.model.tau: 9.0 is outside [0.0, 2.0]", ["space.model.tau.high=9"], "--set space.model.tau.high=9"),
    ("unknown config key 'model.taux'; did you mean 'model.tau'?", ["model.taux=1"], "--set model.taux=1"),
    ("model.tau: 9.0 is outside [0.0, 2.0]", ["model.tau_x=1", "train.lr=0.1"], "cfg.yaml"),  # the file's value
    ("space.model.tau.low: a loguniform parameter needs low > 0", ["space.model.tau.high=2"], "cfg.yaml"),
    ("the file is empty", ["model.tau=9"], "cfg.yaml"),
])
def test_an_error_is_blamed_on_the_set_that_gave_the_value(message, overrides, source):
    assert str(blame(ConfigError(message), "cfg.yaml", overrides)) == f"{source}: {message}"
    assert str(blame(ConfigError(message), None, overrides)) == message  # no file: every value came from --set
