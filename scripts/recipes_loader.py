"""Load a recipe file's Config class by path (recipes/ is a folder of scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MAIN_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "grpo_qwen_1_5b.py"


def load_recipe_module(path: Path = MAIN_RECIPE):
    spec = importlib.util.spec_from_file_location(f"recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def load_recipe_config(path: Path = MAIN_RECIPE):
    return load_recipe_module(path).Config
