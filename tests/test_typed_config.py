"""A family's configuration is a typed, frozen record made from its parameters (trainables/config.py)."""

import dataclasses
import json
import pickle
import subprocess
import sys
import typing

import numpy as np
import pytest
import torch
from torch import nn

from mathtune.trainables import ConfigError, Family, FamilyConfig, Param, family_names, get_family, train
from mathtune.trainables.loop import load_checkpoint, save_checkpoint

T2T = get_family("arith-text2text")


def _plain(family, overrides=None):
    """What make_config returned before it returned records: the defaults, each override checked by its Param."""
    params = family.all_params()
    out = {k: p.default for k, p in params.items()}
    out.update({k: params[k].check(k, v) for k, v in (overrides or {}).items()})
    return out


@pytest.mark.parametrize("name", family_names())
def test_every_familys_defaults_give_the_same_plain_dict_as_before(name):
    family = get_family(name)
    config = family.make_config()
    assert isinstance(config, family.config_type()) and isinstance(config, FamilyConfig)
    plain = config.as_dict()
    assert plain == _plain(family) and list(plain) == list(family.all_params())  # same keys, values and order
    assert json.dumps(plain, sort_keys=True) == json.dumps(_plain(family), sort_keys=True)  # config.json bytes
    assert family.make_config(plain) == config  # the plain dict round-trips
    assert all(getattr(config, k) == v for k, v in plain.items())


def test_overrides_are_coerced_and_read_as_attributes():
    config = T2T.make_config({"hidden": "128", "lr": 0.01, "split": 0.25, "init": "torch", "epochs": 3.0})
    assert (config.hidden, config.lr, config.split, config.init, config.epochs) == (128, 0.01, 0.25, "torch", 3)
    assert type(config.hidden) is int and type(config.epochs) is int and type(config.lr) is float
    assert config["hidden"] == 128  # a name held in a variable
    assert config.as_dict() == _plain(T2T, {"hidden": "128", "lr": 0.01, "split": 0.25, "init": "torch", "epochs": 3.0})


def test_the_record_type_is_one_frozen_dataclass_per_family_typed_from_its_params():
    kind = T2T.config_type()
    assert kind is T2T.config_type() and kind.__name__ == "ArithText2TextConfig"
    assert get_family("t2m-lstm").config_type().__name__ == "T2MLstmConfig"
    assert get_family("t2m-lstm").config_type() is not get_family("t2m-attn").config_type()
    fields = {f.name: f for f in dataclasses.fields(kind)}
    assert list(fields) == list(T2T.all_params())
    assert fields["hidden"].type is int and fields["hidden"].default == 256 and fields["lr"].type is float
    assert fields["init"].type == typing.Literal["keras", "torch"]  # choices
    assert typing.get_args(fields["ops"].type) == ("+-", "*")

    class Optional(Family):
        name, description, data_params = "optional-test", "a family with an optional parameter", ()
        params = {"note": Param(None, "may be None", str)}
    assert dataclasses.fields(Optional.config_type())[-1].type == typing.Optional[str]
    assert Optional.make_config().note is None and Optional.make_config({"note": 3}).note == "3"


def test_the_record_is_frozen():
    config = T2T.make_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden = 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.brand_new = 1
    assert config.hidden == 256


def test_a_parameter_the_family_does_not_declare_cannot_be_read():
    config = get_family("t2m-lstm").make_config()
    with pytest.raises(AttributeError, match="family t2m-lstm has no parameter 'attention_style'"):
        config.attention_style  # t2m-attn's parameter: reading it on t2m-lstm is the bug, where it happens
    with pytest.raises(KeyError, match="t2m-lstm has no parameter 'attention_style'"):
        config["attention_style"]
    assert not hasattr(config, "get")  # no silent default
    with pytest.raises(TypeError):
        "hidden" in config  # noqa: B015 - not a mapping: as_dict() lists the parameters
    with pytest.raises(TypeError):
        list(config)
    assert get_family("t2m-attn").make_config().attention_style == "bahdanau"


def test_equality_hash_and_a_repr_of_what_differs_from_the_defaults():
    a = T2T.make_config({"epochs": 2, "split": 0.25})
    assert a == T2T.make_config({"split": "0.25", "epochs": "2"}) and hash(a) == hash(T2T.make_config(a.as_dict()))
    assert a != T2T.make_config({"epochs": 3, "split": 0.25}) and a != a.as_dict()
    assert len({a, T2T.make_config({"split": 0.25, "epochs": 2})}) == 1
    assert repr(a) == "ArithText2TextConfig(epochs=2, split=0.25)"
    assert repr(T2T.make_config()) == "ArithText2TextConfig()"


@pytest.mark.parametrize("name", ["arith-text2text", "t2m-attn", "replay-arith-img2text", "replay-t2m-bert-ft"])
def test_a_record_pickles_as_its_family_and_values(name):
    """Ray pickles configs; a record type made at run time is rebuilt from its family class and the values."""
    from ray import cloudpickle

    family = get_family(name)
    config = family.make_config({"epochs": 3, "seed": 7})
    for dumps in (pickle.dumps, cloudpickle.dumps):
        again = pickle.loads(dumps(config))
        assert again == config and type(again) is type(config) and again.as_dict() == config.as_dict()


def test_a_record_unpickles_in_a_fresh_process_that_has_made_no_family():
    """What a Ray worker does: unpickle a config (of a replay-NAME class made at run time too) in a process that has
    imported no family and made no replay class yet; the family class is found by its import path."""
    from ray import cloudpickle

    # one process per pickler; in each, every config is of a family (or replay class) it has not met before
    load = ("import pickle, sys\nfor blob in pickle.loads(sys.stdin.buffer.read()):\n    c = pickle.loads(blob)\n"
            "    print(type(c).__name__, c._family.name, c.epochs, c.seed)")
    configs = [get_family(name).make_config({"epochs": 3, "seed": 7})
               for name in ("replay-arith-text2text", "replay-t2m-attn", "arith-img2text")]
    for dumps in (pickle.dumps, cloudpickle.dumps):
        done = subprocess.run([sys.executable, "-c", load], input=pickle.dumps([dumps(c) for c in configs]),
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert [line.split() for line in done.stdout.decode().splitlines()] == \
            [[type(c).__name__, c._family.name, "3", "7"] for c in configs]


def test_replace_checks_through_the_params_with_make_configs_messages():
    config = T2T.make_config({"epochs": 2})
    changed = config.replace(hidden="64", dropout=0.5)
    assert (changed.hidden, changed.dropout, changed.epochs, config.hidden) == (64, 0.5, 2, 256)
    for bad in ({"hidden": 0}, {"dropout": 1.5}, {"ops": "/"}, {"hidden": "wide"}, {"hiden": 3}):
        with pytest.raises(ConfigError) as made:
            T2T.make_config(bad)
        with pytest.raises(ConfigError) as replaced:
            config.replace(**bad)
        assert str(replaced.value) == str(made.value) and len(str(made.value).splitlines()) == 1
    assert str(made.value).startswith("config: unknown parameter 'hiden' for family arith-text2text (known: ")
    with pytest.raises(ConfigError, match=r"^config: hidden: 0 is below the minimum 4$"):
        config.replace(hidden=0)
    with pytest.raises(ConfigError, match=r"^config: dropout: 1.5 is above the maximum 0.9$"):
        dataclasses.replace(config, dropout=1.5)  # constructing the record directly checks the same way
    with pytest.raises(ConfigError, match="hidden: 0 is below the minimum 4"):
        T2T.config_type()(hidden=0)
    assert T2T.config_type()(hidden="32") == T2T.make_config({"hidden": 32})


class Probe(Family):
    """A small family that records what each hook is given."""

    name, description = "probe-test", "records the configs its hooks receive"
    params = {"width": Param(4, "hidden width", int, 1, 64),
              "floor": Param(1, "the smallest width allowed", int, 1, 64)}
    data_params = ("width", "data_seed")
    seen: list = []

    @classmethod
    def check_config(cls, config, *, where="config"):
        cls.seen.append(("check_config", config))
        if config.width < config.floor:
            raise ConfigError(f"{where}: width: {config.width} is below floor {config.floor}")

    def build_data(self, config):
        self.seen.append(("build_data", config))
        rng = np.random.default_rng(config.data_seed)
        return torch.from_numpy(rng.normal(size=(32, 2)).astype(np.float32))

    def build_model(self, config, data):
        self.seen.append(("build_model", config))
        return nn.Sequential(nn.Linear(2, config.width), nn.ReLU(), nn.Linear(config.width, 1))

    def batches(self, data, config, generator, device):
        self.seen.append(("batches", config))
        yield (data.to(device),)

    def loss(self, model, batch, config, generator=None):
        self.seen.append(("loss", config))
        return model(batch[0]).pow(2).mean()

    def evaluate(self, model, data, config, device, *, final=False):
        self.seen.append(("evaluate", config))
        return {"val_loss": float(model(data).pow(2).mean().detach()), "val_exact_match": 0.0}

    def optimizer(self, model, config):
        self.seen.append(("optimizer", config))
        return super().optimizer(model, config)

    def scheduler(self, optimizer, config):
        self.seen.append(("scheduler", config))
        return super().scheduler(optimizer, config)

    def warm_start(self, model, config):
        self.seen.append(("warm_start", config))
        return None


def test_every_hook_of_a_training_run_gets_the_typed_record(tmp_path):
    Probe.seen.clear()
    family = Probe()
    config = family.make_config({"width": 8, "epochs": 2, "threads": 1, "lr_schedule": "cosine"})
    result = train(family, config, checkpoint_dir=tmp_path, progress=None)
    hooks = {hook for hook, _ in Probe.seen}
    assert hooks == {"check_config", "build_data", "build_model", "batches", "loss", "evaluate", "optimizer",
                     "scheduler", "warm_start"}
    assert all(type(c) is Probe.config_type() and c == config for _, c in Probe.seen)
    assert result["config"] is config and family.data_key(config) == (("width", 8), ("data_seed", 0))
    _, saved, _ = load_checkpoint(tmp_path / "last")
    assert saved == config.as_dict()  # the checkpoint holds the plain dict, as before
    with pytest.raises(ConfigError, match="^config: width: 2 is below floor 3$"):
        config.replace(width=2, floor=3)  # cross-key rules run on replace too
    with pytest.raises(TypeError, match="make_config"):
        train(family, config.as_dict(), progress=None)  # a plain dict is converted where it comes in, not here


def test_the_default_score_decoded_evaluates_each_setting_as_a_checked_copy():
    Probe.seen.clear()
    family = Probe()
    config = family.make_config({"width": 8})
    data = family.build_data(config)
    model = family.build_model(config, data)
    family.score_decoded(model, data, config, torch.device("cpu"), [{"width": 16}, {"width": 32}])
    widths = [c.width for hook, c in Probe.seen if hook == "evaluate"]
    assert widths == [16, 32] and config.width == 8
    with pytest.raises(ConfigError, match="width: 65 is above the maximum 64"):
        family.score_decoded(model, data, config, torch.device("cpu"), [{"width": 65}])


def test_a_subclass_that_changes_only_behaviour_shares_its_parents_record_type(tmp_path):
    class Louder(type(T2T)):
        def describe_data(self, data):
            return "louder"

    assert Louder.config_type() is T2T.config_type()
    config = T2T.make_config({"limit": 64, "hidden": 8, "decoder_hidden": 8, "epochs": 1, "threads": 1})
    assert train(Louder(), config, progress=None)["config"] is config


def test_saved_configurations_are_read_once_at_the_boundary(tmp_path):
    """A checkpoint's config.json, a shipped file's config: keys of older versions left out, the rest checked."""
    config = T2T.read_config({"hidden": 64, "a_parameter_of_older_versions": 1}, {"epochs": "2"}, where="x.json")
    assert config == T2T.make_config({"hidden": 64, "epochs": 2})
    with pytest.raises(ConfigError, match=r"^x.json: hidden: 1 is below the minimum 4$"):
        T2T.read_config({"hidden": 1}, where="x.json")
    data = T2T.build_data(T2T.make_config({"limit": 64}))
    model = T2T.build_model(config, data)
    save_checkpoint(tmp_path / "c", model=model, optimizer=T2T.optimizer(model, config), scheduler=None, epoch=1,
                    generator=torch.Generator(), config=config, history=[], best=None)
    written = (tmp_path / "c" / "config.json").read_text()
    assert written == json.dumps(_plain(T2T, {"hidden": 64, "epochs": 2}), indent=1, sort_keys=True)


def test_the_image_families_extra_supervision_reads_their_declared_aux_weight():
    img2text = get_family("arith-img2text")
    assert img2text.extra_supervision(img2text.make_config()) is None
    assert img2text.extra_supervision(img2text.make_config({"aux_weight": 0.5})) == \
        "a per-image reading head (aux_weight)"
