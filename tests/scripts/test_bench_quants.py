"""scripts/bench_quants.py end to end on the tiny model: every quant exported (k-quants also with the
task's importance matrix), evaluated on the same examples, compared with the reference by the paired
bootstrap, timed in alternating rounds; a second invocation reuses the evaluations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

pytestmark = pytest.mark.slow


def test_bench_quants_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("llama_cpp")
    import bench_quants
    from t2g.flags import parse

    sizes = {"model": str(tiny_model_dir), "out": str(tmp_path), "data": "examples", "limit": 3, "quants": "q8_0,q4_k_m",
             "imatrix_data": "examples", "imatrix_limit": 2, "nll_data": "examples", "nll_limit": 2, "speed_limit": 1,
             "max_new_tokens": 8}
    # --rounds 0: F1 and log-loss only (beside other work); the speed comes from a later invocation
    first = bench_quants.bench(parse(bench_quants.Flags, {**sizes, "rounds": 0}))
    assert all(row["speed_vs_reference_median"] is None and "speed_vs_reference" not in row for row in first["rows"].values())
    assert "q4_k_m+imatrix" in capsys.readouterr().out
    report = tmp_path / "eval" / "q4_k_m" / "report.json"
    before = report.stat().st_mtime_ns
    flags = parse(bench_quants.Flags, {**sizes, "rounds": 2})
    result = bench_quants.bench(flags)
    assert report.stat().st_mtime_ns == before  # the evaluations were kept; only the speed was measured
    rows = result["rows"]
    assert list(rows) == ["q8_0", "q4_k_m", "q4_k_m+imatrix"]
    assert (tmp_path / "ggufs" / "q4_k_m-imatrix" / "imatrix.npz").is_file()
    for label, row in rows.items():
        assert row["n"] == 3 and 0 <= row["relation_f1"] <= 1 and len(row["speed_vs_reference"]) == 2, label
    assert rows["q8_0"]["speed_vs_reference"] == [1.0, 1.0] and "relation_vs_reference" not in rows["q8_0"]
    assert all(row["answer_nll"] > 0 for row in rows.values())
    d = rows["q4_k_m+imatrix"]["relation_vs_reference"]
    assert d["low"] <= d["delta"] <= d["high"]
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == rows
    assert "q4_k_m+imatrix" in capsys.readouterr().out
    # per-tensor mixes: a label of their own, without the importance matrix when --imatrix=false
    mixes = bench_quants.bench(parse(bench_quants.Flags, {**sizes, "out": str(tmp_path / "mixes"), "rounds": 0, "imatrix": False,
                                                          "tensor_types": ["ffn_down=q8_0", "ffn_down=q8_0,attn_v=q8_0"]}))
    assert list(mixes["rows"]) == ["q8_0", "q4_k_m", "q4_k_m+ffn_down=q8_0", "q4_k_m+ffn_down=q8_0,attn_v=q8_0"]
    import gguf

    mixed = gguf.GGUFReader(str(tmp_path / "mixes" / "ggufs" / "q4_k_m-ffn_down=q8_0_attn_v=q8_0" / "model-q4_k_m.gguf"))
    assert {t.tensor_type.name for t in mixed.tensors if t.name.endswith(("ffn_down.weight", "attn_v.weight"))} == {"Q8_0"}
    from t2g.export.gguf import ExportError

    with pytest.raises(ExportError, match="matches no tensor"):
        bench_quants.bench(parse(bench_quants.Flags, {**sizes, "out": str(tmp_path / "typo"), "rounds": 0, "imatrix": False,
                                                      "tensor_types": ["ffn_dwn=q8_0"]}))
    # a further invocation keeps the GGUFs, evaluations and speed rounds (the files are not rewritten), with
    # --rounds as before or 0
    again = bench_quants.bench(flags)
    assert report.stat().st_mtime_ns == before and again["rows"] == rows
    assert bench_quants.bench(parse(bench_quants.Flags, {**sizes, "rounds": 0}))["rows"] == rows
