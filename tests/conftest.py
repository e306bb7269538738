"""Shared fixtures: offline models and the CoNLL04 data from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Never let unsloth install or download anything from a test, and never reach a model hub.
for _key, _value in {
    "UNSLOTH_AUTO_INSTALL": "0",
    "UNSLOTH_LLAMA_CPP_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def conll04_dir() -> Path:
    path = SHARED_DATA / "conll04"
    if not (path / "test.json").is_file():
        pytest.skip(f"CoNLL04 not found at {path} (the project's ../shared/data folder is absent)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from t2g.models.offline import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from t2g.models.offline import AssetError, smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except AssetError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def smollm2_hf_dir(smollm2_gguf) -> Path:
    from t2g.models.offline import smollm2_hf_dir as build

    return build()
