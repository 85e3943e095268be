"""Every config group option and every recipe composes against the typed schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
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
