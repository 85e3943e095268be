"""Every config group option and every recipe composes against the typed schema."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli_in_process
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from nmt.config import (
    Config,
    check_known_keys,
    conf_dir,
    from_plain,
    register_configs,
    to_plain,
)
from nmt.config_checks import validate
from nmt.config_choices import Cell, Choice, DecodeMethod, Optimizer
from nmt.errors import ConfigError

CONF = conf_dir()
REPO = CONF.parent
GROUPS = ["data", "tokenizer", "model", "embeddings", "train", "decode"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
RECIPES = sorted(p for p in (REPO / "recipes").glob("*/*.yaml"))


def _compose(overrides: list[str], config_dir: Path = CONF, name: str = "config"):
    register_configs()
    extra = [] if config_dir == CONF else [f"hydra.searchpath=[file://{CONF}]"]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(name, overrides=overrides + extra)


def _missing_keys(cfg) -> set[str]:
    out = set()

    def walk(node, prefix):
        for key in node:
            path = f"{prefix}{key}"
            if OmegaConf.is_missing(node, key):
                out.add(path)
            elif OmegaConf.is_dict(node[key]):
                walk(node[key], path + ".")

    assert isinstance(cfg, DictConfig)
    walk(cfg, "")
    return out


@pytest.mark.parametrize("group", GROUPS)
def test_the_options_of_a_group_are_different_configs(group):
    """Every option of a group changes the composed config in its own way (two options that
    compose to the same config would be one option under two names)."""
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, f"conf/{group}/ has no option"
    composed = {o: OmegaConf.to_yaml(_compose([f"{group}={o}"])) for o in options}
    seen: dict[str, str] = {}
    for option, text in composed.items():
        assert text not in seen, f"{group}={option} composes to the same config as {seen.get(text)}"
        seen[text] = option


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group, option):
    cfg = _compose([f"{group}={option}"])
    assert _missing_keys(cfg) == set()  # no option leaves a required (???) value unset
    # The composed config is still the typed schema: a wrong type is refused.
    with pytest.raises(ValidationError):
        cfg.train.max_steps = "many"


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.parent.name for p in RECIPES])
def test_every_recipe_composes(recipe):
    first_line = recipe.read_text().splitlines()[0]
    assert first_line.startswith("# Run:"), f"{recipe} must start with the command that runs it"
    cfg = _compose([], config_dir=recipe.parent, name=recipe.stem)
    assert _missing_keys(cfg) == set()
    assert cfg.data.name in {"multi30k_en_fr", "tatoeba_en_fr", "tinyshakespeare", "local"}


def test_every_recipe_runs_from_a_make_target_with_its_readme():
    """Each recipe's first line names a `make` target that exists, whose recipe line runs
    that recipe, and the folder has the README with its results table."""
    makefile = (REPO / "Makefile").read_text()
    targets = dict(re.findall(r"^([a-z0-9-]+):.*?\n\t(.+)$", makefile, flags=re.M))
    assert {p.parent.name for p in RECIPES} >= {"quickstart", "multi30k_en_fr", "tatoeba_en_fr"}
    for recipe in RECIPES:
        target = re.match(r"# Run: make ([a-z0-9-]+)", recipe.read_text()).group(1)
        assert target in targets, f"{recipe}: make {target} does not exist"
        command = targets[target]
        assert recipe.stem in command or recipe.parent.name in command, (recipe, command)
        readme = (recipe.parent / "README.md").read_text()
        assert "| run |" in readme or "| runs |" in readme or "## Results" in readme, recipe


@pytest.mark.parametrize(
    "override",
    ["data.max_lenn=5", "model.cel=gru", "train.lr=fast", "decode.beam_size=wide"],
)
def test_typo_or_wrong_type_fails_naming_the_key(override):
    with pytest.raises(ConfigCompositionException) as err:
        _compose([override])
    key = override.lstrip("+").split("=")[0]
    message = str(err.value) + str(err.value.__cause__ or "")
    assert key.split(".")[-1] in message


@pytest.mark.parametrize("override", ["+foo=1", "+train.warmup=3"])
def test_appended_unknown_key_is_refused(override):
    cfg = _compose([override])
    with pytest.raises(ConfigError, match=override.lstrip("+").split("=")[0]):
        check_known_keys(cfg)
    check_known_keys(_compose([]))  # the defaults themselves pass


def test_plain_round_trip_keeps_types():
    cfg = _compose(["model=lstm", "train.lr=0.01"])
    plain = to_plain(cfg)
    again = from_plain(plain)
    assert again.model.cell == "lstm" and again.train.lr == pytest.approx(0.01)
    assert OmegaConf.get_type(again) is Config
    with pytest.raises(Exception):  # noqa: B017 - any omegaconf key error
        from_plain({"model": {"nonsense": 1}})


# --- the closed choices (nmt/config_choices.py) -----------------------------------------

CHOICE_KEYS = {
    "data.on_bad_utf8",
    "tokenizer.model_type",
    *(f"model.{k}" for k in ("arch", "cell", "attention", "attentional_vector", "bridge", "init")),
    *(f"embeddings.{side}.{k}" for side in ("src", "tgt") for k in ("init", "format", "subword")),
    *(f"train.{k}" for k in ("device", "precision", "optimizer", "schedule", "valid_metric")),
    "decode.method",
}


def _choice_keys(kind: type = Config, prefix: str = "") -> dict[str, type[Choice]]:
    """Every key of the schema whose type is a Choice Enum, with that Enum."""
    out: dict[str, type[Choice]] = {}
    for f in dataclasses.fields(kind):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if isinstance(default, Choice):
            out[prefix + f.name] = type(default)
        elif dataclasses.is_dataclass(default):
            out.update(_choice_keys(type(default), f"{prefix}{f.name}."))
    return out


def _other_choice(key: str, kind: type[Choice]) -> str:
    """A valid value of ``key`` that is not its default."""
    default = OmegaConf.select(OmegaConf.structured(Config), key)
    return next(v for v in reversed(kind.values()) if v != default)


def test_the_closed_choices_are_enums():
    assert set(_choice_keys()) == CHOICE_KEYS


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_a_wrong_choice_is_one_cli_line_naming_the_key_and_the_choices(
    key, tmp_path, monkeypatch, capsys
):
    from nmt.cli.train import main

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    argv = ["nmt-train", "data=local", f"{key}=nonsense", f"hydra.run.dir={tmp_path / 'run'}"]
    code, err = run_cli_in_process(main, argv, monkeypatch, capsys)
    choices = ", ".join(_choice_keys()[key].values())
    assert code == 2, err
    assert err == f"nmt: error: {key}='nonsense' is unknown: use one of {choices}\n"
    assert not (tmp_path / "run").exists()


def test_every_choice_is_accepted_and_read_as_its_string():
    base = _compose(["data=local"])
    for key, kind in _choice_keys().items():
        for value in kind.values():
            cfg = OmegaConf.merge(base, OmegaConf.from_dotlist([f"{key}={value}"]))
            got = OmegaConf.select(cfg, key)
            assert isinstance(got, kind) and got == value and f"{got}" == value, (key, value)


def test_a_choice_is_its_name_as_a_string():
    for kind in Choice.__subclasses__():
        # OmegaConf converts a string by the member's name and writes a member as its name.
        assert all(m.name == m.value for m in kind), kind
    gru = Cell.gru
    assert gru == "gru" and gru != "lstm" and str(gru) == "gru" and f"{gru:>4}|" == " gru|"
    assert repr(gru) == "'gru'"  # messages and repr()-based cache keys as before the Enums
    assert {"gru": 3}[gru] == 3 and json.dumps({gru: gru}) == '{"gru": "gru"}'


def test_the_choices_match_what_the_code_implements():
    from nmt.data.readers import BAD_UTF8_MODES
    from nmt.data.tokenizer import MODEL_TYPES
    from nmt.devices import DEVICE_KINDS
    from nmt.models.attention import ATTENTIONS
    from nmt.models.rnn import CELLS
    from nmt.models.vectors import FORMATS
    from nmt.train.optim import SCHEDULES, build_optimizer
    from nmt.train.seq2seq_task import METRICS
    from nmt.train.trainer import AMP_DTYPES

    keys = _choice_keys()
    implemented = {
        "data.on_bad_utf8": BAD_UTF8_MODES,
        "tokenizer.model_type": MODEL_TYPES,
        "train.device": DEVICE_KINDS,
        "model.attention": ATTENTIONS,
        "model.cell": CELLS,
        "embeddings.src.format": FORMATS,
        "train.schedule": SCHEDULES,
        "train.valid_metric": METRICS,
        "train.precision": AMP_DTYPES,
    }
    for key, names in implemented.items():
        assert keys[key].values() == tuple(names), key
    for name in Optimizer.values():  # each one builds
        cfg = OmegaConf.structured(Config).train
        cfg.optimizer = name
        assert build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg) is not None


def test_choices_round_trip_through_a_checkpoint(tmp_path):
    """to_plain -> torch.save -> torch.load(weights_only=True) -> from_plain keeps every
    choice (Enum members would not load with weights_only, nor be written as JSON)."""
    chosen = {key: _other_choice(key, kind) for key, kind in _choice_keys().items()}
    cfg = _compose(["data=local", *(f"{k}={v}" for k, v in chosen.items())])
    plain = to_plain(cfg)
    for key in chosen:
        value = plain
        for part in key.split("."):
            value = value[part]
        assert type(value) is str and value == chosen[key], key
    json.dumps(plain)
    buffer = io.BytesIO()
    torch.save({"config": plain}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["config"]
    again = from_plain(loaded)
    for key, kind in _choice_keys().items():
        got = OmegaConf.select(again, key)
        assert isinstance(got, kind) and got == chosen[key], key
    assert to_plain(again) == plain
    assert to_plain(Config()) == to_plain(OmegaConf.structured(Config))  # dataclass too


def test_old_checkpoint_strings_still_load():
    from nmt.inference import decode_settings

    old = {
        "model": {"cell": "lstm", "attention": "luong_dot", "init": "xavier"},
        "train": {"optimizer": "Adam", "precision": "bf16"},  # "Adam": matched without case
        "decode": {"method": "greedy"},
    }
    cfg = from_plain(old)
    assert cfg.model.cell == Cell.lstm and cfg.train.optimizer == "adam"
    dec = decode_settings(cfg)  # OmegaConf.to_object, as nmt.search.translator does
    assert dec.method == "greedy" and dec.method is DecodeMethod.greedy
    assert dataclasses.replace(dec, method="beam").method == "beam"
    with pytest.raises(ValidationError, match="model.cell"):
        from_plain({"model": {"cell": "transformer"}})


# (overrides that cannot work together, the message, one more override that fixes them):
# each fails only as a combination.
CROSS_FIELD = [
    (["train.decay_by_time=true"], "needs train.schedule=cosine", "train.schedule=cosine"),
    (
        ["train.max_tokens=0", "train.max_sentences=0"],
        "set train.max_tokens or train.max_sentences",
        "train.max_sentences=16",
    ),
    (
        ["model.share_embeddings=true", "tokenizer.joint=false"],
        "needs one joint vocabulary",
        "tokenizer.joint=true",
    ),
    (
        ["model.share_embeddings=true", "tokenizer.restrict_vocab=true"],
        "tokenizer.restrict_vocab=false",
        "tokenizer.restrict_vocab=false",
    ),
    (
        ["model.attention=none", "model.input_feeding=true"],
        "model.input_feeding=true .* needs attention",
        "model.input_feeding=false",
    ),
    (
        ["model=char_lm", "model.attention=bahdanau"],
        "char_lm has no source to attend to",
        "model.attention=none",
    ),
    (["model.hidden_dim=33"], "use an even model.hidden_dim", "model.bidirectional=false"),
    (
        ["model.init=uniform", "model.init_scale=0"],
        "model.init_scale=0.0 must be a positive number",
        "model.init=xavier",
    ),
    (
        ["model.share_embeddings=true", "embeddings.src.init=word2vec"],
        "must be set the same way",
        "embeddings.tgt.init=word2vec",
    ),
    (
        ["embeddings.src.vectors=glove_6b_50d", "embeddings.src.init=file"],
        "embeddings.src.vectors=glove_6b_50d and embeddings.src.init=file disagree",
        "embeddings.src.init=pretrained",
    ),
    (
        ["embeddings.tgt.init=pretrained"],
        "embeddings.tgt.init=pretrained needs embeddings.tgt.vectors=NAME",
        "embeddings.tgt.vectors=fr_core_news_md",
    ),
    (
        ["model=char_lm", "embeddings.src.init=word2vec"],
        "embeddings.src asks for 'word2vec' but this model has no src embedding",
        "embeddings.src.init=random",
    ),
    (
        ["data.local.train_tsv=t.tsv", "data.local.train_src=t.en"],
        "data.local.train_tsv and data.local.train_src are both set",
        "data.local.train_src=null",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "match", "fix"), CROSS_FIELD, ids=[",".join(c[0]) for c in CROSS_FIELD]
)
def test_validate_refuses_each_combination_that_cannot_work(overrides, match, fix):
    with pytest.raises(ConfigError, match=match) as err:
        validate(_compose(["data=local", *overrides]))
    assert "\n" not in str(err.value)
    validate(_compose(["data=local", *overrides, fix]))  # one key changed: it passes
