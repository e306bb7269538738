"""Every recipe in recipes/: its Config builds and validates on this CPU machine (defaults and --smoke),
its smoke settings name real fields, and `--help` shows every flag and reward weight with its meaning.

No model is loaded: these run in seconds.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

import rewards
from recipe_run import RECIPES, run_recipe
from t2g.flags import type_name
from t2g.train.config import SMOKE_EXPORT_EVAL, TrainConfig, from_flags, load_recipe, reward_summary

ids = [p.stem for p in RECIPES]


@pytest.fixture(scope="module", params=RECIPES, ids=ids)
def recipe(request):
    return request.param


def test_there_are_recipes():
    assert len(RECIPES) >= 3, RECIPES


def test_the_recipe_says_how_to_run_it(recipe):
    module = load_recipe(recipe)
    assert f"python recipes/{recipe.name}" in (module.__doc__ or ""), "the docstring shows its commands"
    assert issubclass(module.Config, TrainConfig) and module.Config.__doc__


@pytest.mark.parametrize("given", [{}, {"smoke": True}], ids=["defaults", "smoke"])
def test_the_config_validates_on_this_machine(recipe, given):
    Config = load_recipe(recipe).Config
    cfg = from_flags(Config, given)  # validates; raises ConfigError otherwise
    assert cfg.stages and set(cfg.stages) <= set(Config.RECIPE_STAGES)
    if given.get("smoke"):
        for name, value in {**SMOKE_EXPORT_EVAL, **Config.SMOKE_OVERRIDES}.items():
            assert getattr(cfg, name) == (tuple(value) if isinstance(value, list) else value), name


def test_smoke_overrides_name_only_fields(recipe):
    Config = load_recipe(recipe).Config
    fields = {f.name for f in dataclasses.fields(Config)}
    assert Config.SMOKE_OVERRIDES, "a recipe says what --smoke shrinks"
    assert set(Config.SMOKE_OVERRIDES) <= fields, set(Config.SMOKE_OVERRIDES) - fields


def test_help_shows_every_flag_and_reward_weight(recipe):
    Config = load_recipe(recipe).Config
    proc = run_recipe("--help", recipe=recipe, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()

    def row(flag: str) -> str:
        found = [line for line in lines if re.match(rf"  {flag} +\(", line)]
        assert len(found) == 1, f"{flag}: {found}"
        return found[0]

    hints = typing.get_type_hints(Config)
    for field in dataclasses.fields(Config):
        name = field.name
        help_ = field.metadata.get("help")
        assert help_, f"{name} has no help text"
        line = row(f"--{name}")
        assert f"({type_name(hints[name])}, " in line and line.endswith(help_ + (f" [{' | '.join(field.metadata['choices'])}]"
                                                                 if field.metadata.get("choices") else "")), line
    for row_ in rewards.REWARDS:
        name, summary = row_.name, reward_summary(row_.name)
        assert summary.startswith(row_.pays_for) and row_.pays_for
        assert row(f"--w_{name}").endswith(f"weight of {name} (0 = off): {summary}")
