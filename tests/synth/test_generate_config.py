"""`GenerateConfig` as the flags of `t2g generate`: every field says what it does, values arrive as
Fire hands them over, and a wrong flag fails before the pipeline is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from t2g.data.canonical import DataError
from t2g.flags import FlagError, flag_fields, help_text, parse, read_command_line
from t2g.synth.config import GenerateConfig

REQUIRED = ("input", "output", "base_url", "model")


def test_every_flag_has_a_one_line_help_and_the_help_lists_it():
    rows = {line.split()[0]: line for line in help_text(GenerateConfig, "t2g generate").splitlines()
            if line.startswith("  --")}
    for f in flag_fields(GenerateConfig):
        assert f.metadata.get("help") and "\n" not in f.metadata["help"], f.name
        assert f.metadata["help"] in rows[f"--{f.name}"], f.name
    for name in REQUIRED:
        assert "(str, required)" in rows[f"--{name}"]


def test_a_command_line_becomes_the_config_the_pipeline_reads(tmp_path):
    argv = ["--input", "texts.txt", "--output", str(tmp_path / "o.jsonl"), "--base_url", "http://127.0.0.1:8000/v1",
            "--model", "123", "--entity_types", "person,organization", "--relation_types", "works for",
            "--concurrency", "2", "--limit", "5", "--progress", "False", "--reasoning"]
    cfg = parse(GenerateConfig, read_command_line(argv, "t2g generate"))
    assert cfg.model == "123"  # a name, though Fire reads a number
    assert cfg.entity_types == ["person", "organization"] and cfg.relation_types == ["works for"]
    assert (cfg.concurrency, cfg.limit, cfg.progress, cfg.reasoning) == (2, 5, False, True)
    assert cfg.structured == "auto" and cfg.reasoning_model is None


def test_wrong_flags_name_the_nearest_and_the_checks_still_run(tmp_path):
    required = {"input": "t.txt", "output": str(tmp_path / "o.jsonl"), "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    with pytest.raises(FlagError, match="--concurency: did you mean --concurrency"):
        parse(GenerateConfig, {**required, "concurency": 2})
    with pytest.raises(FlagError, match="--structured='xml' is not one of auto, json_schema"):
        parse(GenerateConfig, {**required, "structured": "xml"})
    with pytest.raises(FlagError, match="missing --base_url, --model"):
        parse(GenerateConfig, {"input": "t.txt", "output": "o.jsonl"})
    with pytest.raises(DataError, match="give both --entity_types and --relation_types"):
        parse(GenerateConfig, {**required, "entity_types": "person"})


def test_the_config_imports_nothing_of_the_pipeline():
    code = ("import sys, t2g.synth.config; "
            "print(sorted(m for m in ('t2g.synth.generate', 't2g.synth.dedup', 'numpy', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
