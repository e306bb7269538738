"""The scripts' recipe: the main recipe file's Config class (t2g.train.config.load_recipe loads it)."""

from __future__ import annotations

from pathlib import Path

from t2g.train.config import load_recipe

MAIN_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "grpo_qwen_1_5b.py"


def load_recipe_config(path: Path = MAIN_RECIPE):
    return load_recipe(path).Config
