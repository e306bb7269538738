"""Rewards: the exploit table (each row scored as a careful human would), the registry, the
one-parse-per-batch cache, agreement with the shared scorer, and the diagnostics callback."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import rewards
from rewards import analysis as analysis_module
from t2g.data.load import load_examples
from t2g.task.schema import Graph
from t2g.task.scoring import score_example

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT = "Tim Cook is the chief executive of Apple, which is based in Cupertino."
ETYPES = ["person", "organization", "location"]
RTYPES = ["works for", "located in"]
TC, AP, CU = ({"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"},
              {"text": "Cupertino", "type": "location"})
WORKS, LOCATED = {"head": "Tim Cook", "tail": "Apple", "type": "works for"}, {"head": "Apple", "tail": "Cupertino", "type": "located in"}
GOLD = {"entities": [TC, AP, CU], "relations": [WORKS, LOCATED]}
EMPTY = {"entities": [], "relations": []}
LIMIT = 64  # max_completion_length (tokens) of the table's build
OK_IDS, CUT_IDS = [1] * 10, [1] * LIMIT  # stopped by itself / cut at the limit


def g(entities=(), relations=()) -> str:
    return json.dumps({"entities": list(entities), "relations": list(relations)})


PERFECT = json.dumps(GOLD)
THINK = "<think>Tim Cook heads Apple; Apple sits in Cupertino.</think>\n"
ALL = list(rewards.REGISTRY)
# No usable graph. relation_gain is not here: it depends on the gold (-1 where relations were to be found, 0 where none).
ZERO = {"entity_f1": 0.0, "relation_f1": 0.0, "grounding": -1.0, "type_adherence": -1.0, "consistency": -1.0}
ENTITIES_ONLY = {"entities": [TC, AP, CU], "relations": []}

# (id, completion, gold, completion_ids, expected {reward: value}, what a careful human would say)
TABLE = [
    ("perfect", PERFECT, GOLD, OK_IDS,
     {"json_valid": 1, "entity_f1": 1, "relation_f1": 1, "grounding": 0, "type_adherence": 0, "consistency": 0, "truncation": 0, "format": 0,
      "relation_gain": 1},
     "the right graph, nothing else: full marks (no think block, so no format credit)"),
    ("perfect_reasoning", THINK + PERFECT, GOLD, OK_IDS,
     {"format": 1, "json_valid": 1, "entity_f1": 1, "relation_f1": 1, "soft_entity_match": 1},
     "one reasoning block, then the right graph: full marks"),
    ("tags_alone", "<think></think>", GOLD, OK_IDS,
     {"format": 0, "json_valid": 0, **ZERO},
     "empty tags and no answer are worth nothing"),
    ("tags_wrong_order", "</think><think>" + PERFECT, GOLD, OK_IDS,
     {"format": 0, "json_valid": 0, **ZERO, "truncation": 0},
     "</think><think> hides the answer inside an unclosed block: no answer, no credit (not a truncation)"),
    ("empty_think_then_answer", "<think> </think>" + PERFECT, GOLD, OK_IDS,
     {"format": 0, "json_valid": 1, "entity_f1": 1},
     "an empty reasoning block earns no format credit; the answer itself is right"),
    ("two_think_blocks", THINK + "<think>again</think>" + PERFECT, GOLD, OK_IDS,
     {"format": 0, "json_valid": 0.5, **ZERO},
     "a second block is text before the JSON: broken contract, no graph credit"),
    ("text_before_think", "Sure! " + THINK + PERFECT, GOLD, OK_IDS,
     {"format": 0, "json_valid": 0.5, **ZERO},
     "chatter before the block is text before the answer: the contract is broken, as in evaluation"),
    ("json_only_inside_think", "<think>" + PERFECT + "</think>", GOLD, OK_IDS,
     {"format": 0, "json_valid": 0, **ZERO},
     "the graph inside the reasoning is not an answer"),
    ("json_inside_think_then_prose", "<think>" + PERFECT + "</think> Done.", GOLD, OK_IDS,
     {"format": 1, "json_valid": 0, **ZERO},
     "well-formed blocks, but the answer is prose: format only"),
    ("braces_in_reasoning", '<think>maybe {"entities": [ or {x}</think>' + PERFECT, GOLD, OK_IDS,
     {"format": 1, "json_valid": 1, "entity_f1": 1, "relation_f1": 1},
     "braces while thinking are harmless; the answer after the block counts"),
    ("types_case_and_spaces", g([{"text": "tim  cook", "type": " PERSON "}, {"text": "Apple", "type": "Organization"}, CU],
                                [{"head": "Tim Cook", "tail": "APPLE", "type": "Works  For"}, LOCATED]), GOLD, OK_IDS,
     {"entity_f1": 1, "relation_f1": 1, "type_adherence": 0, "grounding": 0, "consistency": 0},
     "case and spacing do not change a type or a span: full credit"),
    ("empty_vs_empty", g(), EMPTY, OK_IDS,
     {"json_valid": 1, "entity_f1": 1, "relation_f1": 1, "grounding": 0, "type_adherence": 0, "consistency": 0, "soft_entity_match": 1,
      "relation_gain": 0},
     "nothing to extract and nothing extracted: a perfect answer (relation_gain: no relation found, none missed)"),
    ("no_relations_where_none_hold", g([TC, AP, CU]), ENTITIES_ONLY, OK_IDS,
     {"entity_f1": 1, "relation_f1": 1, "relation_gain": 0},
     "the entities and no relation, as the gold has it: relation_f1 pays it like a perfect list, relation_gain 0"),
    ("relation_where_none_holds", g([TC, AP, CU], [WORKS]), ENTITIES_ONLY, OK_IDS,
     {"entity_f1": 1, "relation_f1": 0, "consistency": 0},
     "a false relation costs everything under relation_f1 (relation_gain prices it by its batch: its own test)"),
    ("empty_vs_gold", g(), GOLD, OK_IDS,
     {"json_valid": 1, "entity_f1": 0, "relation_f1": 0, "grounding": 0, "type_adherence": 0, "consistency": 0, "soft_entity_match": 0,
      "relation_gain": 0},
     "an empty graph when there is something to find: valid, but no quality credit"),
    ("garbage_vs_empty_gold", "not json", EMPTY, OK_IDS,
     {"json_valid": 0, **ZERO, "relation_gain": 0},
     "an unreadable answer is not 'nothing found', even when nothing was to be found"),
    ("same_entity_five_times", g([TC] * 5), GOLD, OK_IDS,
     {"entity_f1": 0.5, "relation_f1": 0, "consistency": -0.8},
     "repeats count once in F1 (1 of 3 found) and 4 of 5 items are duplicates"),
    ("string_ids", g([dict(TC, id="e1"), dict(AP, id="e2"), dict(CU, id="e3")],
                     [{"head": "e1", "tail": "e2", "type": "works for"}, {"head": "e2", "tail": "e3", "type": "located in"}]), GOLD, OK_IDS,
     {"json_valid": 1, "entity_f1": 1, "relation_f1": 0, "consistency": -2 / 5},
     "entities right; relations point at ids, not extracted entities: no relation credit"),
    ("integer_ids", g([TC, AP, CU], [{"head": 0, "tail": 1, "type": "works for"}]), GOLD, OK_IDS,
     {"json_valid": 0.25, **ZERO},
     "integer endpoints are not the contract's shape: no graph"),
    ("missing_tail", g([TC, AP, CU], [{"head": "Tim Cook", "type": "works for"}]), GOLD, OK_IDS,
     {"json_valid": 0.25, **ZERO},
     "a relation without a tail is not a graph"),
    ("markdown_fence", "```json\n" + PERFECT + "\n```", GOLD, OK_IDS,
     {"json_valid": 1, "entity_f1": 1, "relation_f1": 1},
     "a code fence around the right JSON is harmless (evaluation accepts it too)"),
    ("hallucinated_entity", g([TC, AP, CU, {"text": "Steve Jobs", "type": "person"}], [WORKS, LOCATED]), GOLD, OK_IDS,
     {"entity_f1": 6 / 7, "relation_f1": 1, "grounding": -0.25, "consistency": 0},
     "one of four entities is not in the text: precision and grounding pay for it"),
    ("relation_to_unextracted", g([TC, AP], [WORKS, LOCATED]), GOLD, OK_IDS,
     {"entity_f1": 0.8, "relation_f1": 0.5, "consistency": -0.25, "grounding": 0, "relation_gain": 1 / 3},
     "a relation to Cupertino, which was never extracted, is dangling and never matches: 1 of 2 right"),
    ("type_outside_lists", g([TC, {"text": "Apple", "type": "company"}, CU], [WORKS, LOCATED]), GOLD, OK_IDS,
     {"entity_f1": 2 / 3, "relation_f1": 0, "type_adherence": -0.2},
     "'company' is not a given type: the entity and both relations through it lose credit"),
    ("relation_type_outside_lists", g([TC, AP, CU], [dict(WORKS, type="ceo of"), LOCATED]), GOLD, OK_IDS,
     {"entity_f1": 1, "relation_f1": 0.5, "type_adherence": -0.2},
     "an invented relation type is penalised and does not match"),
    ("every_type_for_every_span", g([{"text": e["text"], "type": t} for e in (TC, AP, CU) for t in ETYPES]), GOLD, OK_IDS,
     {"entity_f1": 0.5, "type_adherence": 0},
     "listing every type per span is hedging: precision 1/3"),
    ("whole_text_as_entity", g([{"text": TEXT, "type": "person"}]), GOLD, OK_IDS,
     {"entity_f1": 0, "grounding": 0, "soft_entity_match": pytest.approx(0.0, abs=0.2)},
     "copying the text as one entity finds nothing"),
    ("perfect_then_junk", PERFECT + "\nHope this helps!", GOLD, OK_IDS,
     {"json_valid": 0.5, **ZERO},
     "'nothing else' is the contract: junk after the JSON voids the answer, as in evaluation"),
    ("prose_before_json", "Here is the graph: " + PERFECT, GOLD, OK_IDS,
     {"json_valid": 0.5, **ZERO},
     "prose before the JSON breaks the contract too"),
    ("truncated_mid_json", PERFECT[: len(PERFECT) // 2], GOLD, CUT_IDS,
     {"truncation": -1, "json_valid": 0, **ZERO},
     "cut at the limit: a penalty, not partial credit"),
    ("complete_json_but_cut", PERFECT, GOLD, CUT_IDS,
     {"truncation": -1, "json_valid": 0, "format": 0, **ZERO, "soft_entity_match": 0},
     "it hit the limit before stopping: no credit even though the JSON closed"),
    ("truncated_in_think", "<think>Tim Cook heads", GOLD, CUT_IDS,
     {"truncation": -1, "format": 0, **ZERO},
     "cut while reasoning: penalty"),
    ("empty_string", "", GOLD, OK_IDS,
     {"json_valid": 0, **ZERO, "truncation": 0},
     "no output at all: nothing, and the worst hygiene"),
    ("whitespace_only", "  \n\t ", GOLD, OK_IDS,
     {"json_valid": 0, **ZERO},
     "whitespace is an empty output"),
    ("near_miss_span", g([{"text": "Cook", "type": "person"}, AP, CU], [LOCATED]), GOLD, OK_IDS,
     {"entity_f1": 2 / 3, "soft_entity_match": 8 / 9},
     "'Cook' for 'Tim Cook' is wrong for the strict score; the soft term gives it 2/3 of a match (P = R = 8/9)"),
    ("ungrounded_near_miss", g([{"text": "Tim Cooke", "type": "person"}, AP, CU]), GOLD, OK_IDS,
     {"entity_f1": 2 / 3, "soft_entity_match": 2 / 3, "grounding": -1 / 3},
     "a near miss that is not in the text earns no soft credit"),
]


def _run(completion, gold, ids, reasoning=True):
    funcs, _ = rewards.build({name: 1.0 for name in ALL}, reasoning=reasoning, max_completion_length=LIMIT)
    kwargs = dict(text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=[gold], completion_ids=[ids])
    return {f.__name__: f([completion], **kwargs)[0] for f in funcs}


@pytest.mark.parametrize("case", TABLE, ids=[row[0] for row in TABLE])
def test_exploit_table(case):
    _, completion, gold, ids, expected, _why = case
    got = _run(completion, gold, ids)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), f"{name}: got {got[name]}, want {value}"


def _total(completion, gold=GOLD, ids=OK_IDS, weights=None):
    funcs, ws = rewards.build(weights or rewards.DEFAULT_WEIGHTS, reasoning=True, max_completion_length=LIMIT)
    kwargs = dict(text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=[gold], completion_ids=[ids])
    return sum(w * f([completion], **kwargs)[0] for f, w in zip(funcs, ws))


def test_only_the_correct_graph_earns_the_top_total():
    best = _total(THINK + PERFECT)
    for case_id, completion, gold, ids, _, _ in TABLE:
        if gold is GOLD and case_id not in ("perfect_reasoning", "braces_in_reasoning", "types_case_and_spaces"):
            assert _total(completion, gold, ids) < best - 0.2, case_id


def test_default_totals_rank_answers_as_a_human_would():
    partial = g([TC, AP], [WORKS])  # two of three entities, one of two relations, all correct
    assert _total(THINK + PERFECT) > _total(THINK + partial) > _total(THINK + g()) > _total(THINK + "no idea")
    # listing an entity five times never beats listing it once
    assert _total(THINK + g([TC] * 5)) < _total(THINK + g([TC]))
    # hallucinating an extra entity costs more than it could gain
    assert _total(THINK + g([TC, AP, CU, {"text": "Steve Jobs", "type": "person"}], [WORKS, LOCATED])) < _total(THINK + PERFECT)
    # a cut completion is worth less than an honest empty answer
    assert _total(THINK + PERFECT[:40], ids=CUT_IDS) < _total(THINK + g())


def test_relation_gain_prices_a_guess_by_its_batch_corpus_f1():
    def gain(completions, golds=None):
        n = len(completions)
        return rewards.REGISTRY["relation_gain"](completions, text=[TEXT] * n, entity_types=[ETYPES] * n,
                                                 relation_types=[RTYPES] * n, graph=golds or [GOLD] * n)

    ents = [TC, AP, CU]
    wrong = [{"head": "Apple", "tail": "Tim Cook", "type": "works for"}, {"head": "Tim Cook", "tail": "Cupertino", "type": "located in"},
             {"head": "Cupertino", "tail": "Apple", "type": "located in"}, {"head": "Tim Cook", "tail": "Cupertino", "type": "works for"}]
    assert gain([PERFECT]) == [1.0]
    # beside a perfect answer, one right of 1 + k: batch F1 = 6 / (7 + k), break-even precision F / 2 at k = 2
    assert gain([PERFECT, g(ents, [WORKS] + wrong[:1])])[1] > 0  # 1 right of 2 (F = 3/4, break-even 3/8)
    assert gain([PERFECT, g(ents, [WORKS] + wrong[:2])])[1] == pytest.approx(0.0)  # 1 right of 3 at F = 2/3: as good as silence
    assert gain([PERFECT, g(ents, [WORKS] + wrong[:3])])[1] < 0  # 1 right of 4 (F = 3/5)
    # a weaker batch prices a guess lower: 1 right of 4 pays beside answers that find nothing
    assert gain([g(ents, [WORKS] + wrong[:3]), g(ents), g(ents)])[0] > 0  # F = 2/10, break-even 1/10
    # where nothing in the batch is right, a guess costs nothing, as it costs corpus F1 nothing
    assert gain([g(ents, wrong[:1])]) == [0.0]
    # silence earns 0 whatever the gold and the batch
    assert gain([PERFECT, g(ents)])[1] == 0.0 and gain([PERFECT, g(ents)], [GOLD, ENTITIES_ONLY])[1] == 0.0
    # a false relation where none hold costs F / (2 - F) of a gold one: F = 4/5 beside a perfect answer
    assert gain([PERFECT, g(ents, [WORKS])], [GOLD, ENTITIES_ONLY])[1] == pytest.approx(-(4 / 5) / (2 - 4 / 5))
    # no usable graph is the worst where relations were to be found, and no worse than silence where none were
    assert gain([PERFECT, "not json"])[1] == -1.0 and gain([PERFECT, "not json"], [GOLD, ENTITIES_ONLY])[1] == 0.0
    # many false relations bottom out at -1
    many = [{"head": "Tim Cook", "tail": "Apple", "type": f"r{i}"} for i in range(20)]
    assert gain([PERFECT, g(ents, many)], [GOLD, ENTITIES_ONLY])[1] == -1.0


def test_truncation_read_from_text_without_token_counts():
    funcs, _ = rewards.build({"truncation": 1.0, "json_valid": 1.0})
    kwargs = dict(text=[TEXT] * 3, entity_types=[ETYPES] * 3, relation_types=[RTYPES] * 3, graph=[GOLD] * 3)
    out = [f([PERFECT[:30], "<think>still going", PERFECT], **kwargs) for f in funcs]
    assert out == [[-1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]


def test_eos_at_the_limit_is_not_truncation():
    funcs, _ = rewards.build({"truncation": 1.0}, max_completion_length=4, eos_token_id=2)
    kwargs = dict(text=[TEXT] * 2, entity_types=[ETYPES] * 2, relation_types=[RTYPES] * 2, graph=[GOLD] * 2)
    assert funcs[0]([PERFECT, PERFECT], completion_ids=[[5, 5, 5, 2], [5, 5, 5, 5]], **kwargs) == [0.0, -1.0]


def test_limit_without_completion_ids_is_an_error():
    funcs, _ = rewards.build({"truncation": 1.0}, max_completion_length=4)
    with pytest.raises(ValueError, match="completion_ids"):
        funcs[0]([PERFECT], text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=[GOLD])


def test_oversized_completion_gets_no_credit():
    funcs, _ = rewards.build({"json_valid": 1, "entity_f1": 1}, max_completion_chars=1000)
    padded = json.dumps(GOLD, indent=400)
    assert len(padded) > 1000 and json.loads(padded) == GOLD
    kwargs = dict(text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=[GOLD])
    assert [f([padded], **kwargs) for f in funcs] == [[0.0], [0.0]]
    assert funcs[0].diagnostics.rates()["diagnostics/oversized_rate"] == 1.0


def test_import_rewards_stays_light():
    import subprocess
    import sys

    code = "import rewards, sys; print(sorted(m for m in ('transformers', 'torch', 'trl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(REPO_ROOT))
    assert out.stdout.strip() == "[]"


# --- registry and build ----------------------------------------------------------------------

def test_registry_names_are_the_logged_names_and_ranges_are_documented():
    assert set(rewards.REGISTRY) == set(rewards.RANGES) == set(rewards.DEFAULT_WEIGHTS)
    for name, fn in rewards.REGISTRY.items():
        assert fn.__name__ == name
        low, high = rewards.RANGES[name]
        assert f"[{low:g}, {high:g}]" in fn.__doc__, name
    assert set(rewards.REFERENCE_WEIGHTS) == {"format", "json_valid", "entity_f1", "relation_f1"}
    assert len(set(rewards.REFERENCE_WEIGHTS.values())) == 1
    assert 0 <= rewards.DEFAULT_WEIGHTS["soft_entity_match"] <= 0.1  # training-only, off or small


def test_one_row_per_reward_and_every_table_derived_from_the_rows():
    names = [r.name for r in rewards.REWARDS]
    assert len(names) == len(set(names))
    assert list(rewards.REGISTRY) == list(rewards.DEFAULT_WEIGHTS) == list(rewards.RANGES) == names
    assert rewards.REASONING_ONLY == {"format"}
    for row in rewards.REWARDS:
        assert rewards.REGISTRY[row.name].__doc__ == row.score.__doc__
        assert row.pays_for and "\n" not in row.pays_for, row.name


def test_the_readme_reward_table_says_what_the_rows_say():
    # The README groups rewards that share a range and weight ("`entity_f1`, `relation_f1` | ... | 1.0 each").
    import re

    table = {}
    for line in (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\[-?\d, -?\d\]", cells[1]):
            for name in re.findall(r"`(\w+)`", cells[0]):
                table[name] = (cells[1], float(cells[2].split()[0]))
    assert set(table) == set(rewards.REGISTRY), "README.md's reward table lists other rewards than rewards.REWARDS"
    for row in rewards.REWARDS:
        low, high = row.range
        assert table[row.name] == (f"[{low:g}, {high:g}]", row.default_weight), row.name


def test_build_drops_zero_weights_and_format_outside_reasoning():
    funcs, weights = rewards.build({"format": 1.0, "entity_f1": 2.0, "grounding": 0.0}, reasoning=False)
    assert [f.__name__ for f in funcs] == ["entity_f1"] and weights == [2.0]
    funcs, weights = rewards.build({"format": 1.0, "entity_f1": 2.0, "grounding": 0.0}, reasoning=True)
    assert [f.__name__ for f in funcs] == ["format", "entity_f1"] and weights == [1.0, 2.0]


@pytest.mark.parametrize("weights, message", [
    ({"entity_f1": 1.0, "entity_F1": 1.0}, r"unknown reward name\(s\) \['entity_F1'\]; known rewards: format, json_valid"),
    ({"entity_f1": "1"}, "must be a number"),
    ({"entity_f1": float("nan")}, "must be a number"),
    ({"entity_f1": 1.0, "grounding": -0.5}, "must be >= 0"),
    ({"entity_f1": 0.0}, "no reward left"),
    ({"format": 1.0}, "no reward left"),
])
def test_build_rejects_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        rewards.build(weights)


def test_functions_of_one_build_parse_each_completion_once(monkeypatch):
    calls = []
    real = analysis_module.parse_completion
    monkeypatch.setattr(analysis_module, "parse_completion", lambda c: calls.append(c) or real(c))
    funcs, _ = rewards.build(rewards.DEFAULT_WEIGHTS, reasoning=True)
    completions = [PERFECT, THINK + PERFECT, "junk"]
    kwargs = dict(text=[TEXT] * 3, entity_types=[ETYPES] * 3, relation_types=[RTYPES] * 3, graph=[GOLD, json.dumps(GOLD), GOLD])
    for f in funcs:
        f(completions, **kwargs)
    assert len(calls) == 3 and funcs[0].analyzer.n_batches == 1
    for f in funcs:  # a new batch (other completions, equal content elsewhere) is parsed afresh, once
        f(completions[:2] + ["other"], **kwargs)
    assert len(calls) == 6 and funcs[0].analyzer.n_batches == 2
    # the same completions against another gold graph are a different batch
    funcs[0](completions[:2] + ["other"], **dict(kwargs, graph=[EMPTY] * 3))
    assert funcs[0].analyzer.n_batches == 3


def test_standalone_registry_functions_match_built_ones():
    completions = [PERFECT, g([TC]), "junk", THINK + g([TC, AP], [WORKS])]
    kwargs = dict(text=[TEXT] * 4, entity_types=[ETYPES] * 4, relation_types=[RTYPES] * 4, graph=[GOLD] * 4)
    funcs, _ = rewards.build({name: 1.0 for name in ALL}, reasoning=True)
    for f in funcs:
        assert f(completions, **kwargs) == rewards.REGISTRY[f.__name__](completions, **kwargs)


def test_gold_as_dict_or_json_string_and_chat_completions_agree():
    fn = rewards.REGISTRY["relation_f1"]
    base = dict(text=[TEXT] * 2, entity_types=[ETYPES] * 2, relation_types=[RTYPES] * 2)
    chat = [[{"role": "assistant", "content": PERFECT}], [{"role": "assistant", "content": g([TC, AP], [WORKS])}]]
    a = fn([PERFECT, g([TC, AP], [WORKS])], graph=[GOLD, GOLD], **base)
    b = fn(chat, graph=[json.dumps(GOLD)] * 2, **base)
    assert a == b == [1.0, pytest.approx(2 / 3)]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES]), ValueError, "dataset column 'graph'"),
    (dict(text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=["{not json"]), rewards.GoldError, "row 0: column 'graph' is a string but not JSON"),
    (dict(text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=[{"entities": []}]), rewards.GoldError, "missing key 'relations'"),
    (dict(text=[TEXT, TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=[GOLD]), ValueError, "column 'text' has 2 values for 1"),
    (dict(text=[TEXT], entity_types=["person"], relation_types=[RTYPES], graph=[GOLD]), ValueError, "row 0: column 'entity_types' must be a list"),
    (dict(text=[TEXT], entity_types=[ETYPES], relation_types=[[1]], graph=[GOLD]), ValueError, "column 'relation_types' must hold only strings"),
    (dict(text=[None], entity_types=[ETYPES], relation_types=[RTYPES], graph=[GOLD]), ValueError, "column 'text' must be a string"),
])
def test_bad_dataset_columns_fail_clearly(kwargs, error, message):
    with pytest.raises(error, match=message):
        rewards.REGISTRY["entity_f1"]([PERFECT], **kwargs)


def test_f1_rewards_are_the_shared_scorer():
    from t2g.data.augment import __name__ as _  # noqa: F401  (the core's modules import cleanly together)

    rng = random.Random(0)
    examples = load_examples("examples")
    completions, gold, preds = [], [], []
    for ex in examples:
        ents, rels = list(ex.graph.entities), list(ex.graph.relations)
        rng.shuffle(ents)
        ents = ents[: rng.randint(0, len(ents))]
        rels = [r for r in rels if rng.random() < 0.7]
        pred = Graph(tuple(ents), tuple(rels))
        preds.append(pred)
        completions.append(pred.to_json())
        gold.append(ex.graph.to_dict())
    kwargs = dict(text=[e.text for e in examples], entity_types=[e.entity_types for e in examples],
                  relation_types=[e.relation_types for e in examples], graph=gold)
    ent = rewards.REGISTRY["entity_f1"](completions, **kwargs)
    rel = rewards.REGISTRY["relation_f1"](completions, **kwargs)
    for pred, ex, e, r in zip(preds, examples, ent, rel):
        score = score_example(pred, ex.graph)
        assert (e, r) == (score.entity.f1, score.relation.f1)
    assert len(set(ent)) > 3  # the perturbations really produced a spread of scores


# --- diagnostics -----------------------------------------------------------------------------

def _diag_batch(funcs):
    completions = ["", "junk", PERFECT, g([TC, {"text": "Steve Jobs", "type": "boss"}], [LOCATED]), PERFECT[:20]]
    n = len(completions)
    kwargs = dict(text=[TEXT] * n, entity_types=[ETYPES] * n, relation_types=[RTYPES] * n, graph=[GOLD] * n)
    for f in funcs:
        f(completions, **kwargs)


def test_diagnostics_count_once_per_batch():
    funcs, _ = rewards.build(rewards.DEFAULT_WEIGHTS)
    _diag_batch(funcs)
    rates = funcs[0].diagnostics.rates()
    assert rates["diagnostics/empty_output_rate"] == 1 / 5
    assert rates["diagnostics/invalid_json_rate"] == 3 / 5  # empty, prose, cut
    assert rates["diagnostics/truncated_rate"] == 1 / 5
    assert rates["diagnostics/no_usable_graph_rate"] == 3 / 5
    # over the 5 entities and 3 relations of the two usable graphs
    assert rates["diagnostics/ungrounded_span_rate"] == 1 / 5
    assert rates["diagnostics/out_of_schema_type_rate"] == 1 / 8
    assert rates["diagnostics/dangling_relation_rate"] == 1 / 3


def test_callback_puts_rates_in_the_logs_reporters_and_history_see():
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import CallbackHandler, TrainerCallback

    funcs, _ = rewards.build(rewards.DEFAULT_WEIGHTS)
    _diag_batch(funcs)

    class Reporter(TrainerCallback):  # stands in for TensorBoard/W&B: records what on_log receives
        seen: dict = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            Reporter.seen = dict(logs)

    handler = CallbackHandler([Reporter()], None, None, None, None)
    trainer = type("FakeTrainer", (), {"callback_handler": handler})()
    rewards.RewardDiagnosticsCallback(funcs).install(trainer)
    state = TrainerState(global_step=3)
    logs = {"loss": 0.1, "rewards/entity_f1/mean": 0.2}
    state.log_history.append({**logs, "step": 3})
    handler.on_log(TrainingArguments(output_dir="unused", report_to=[]), state, TrainerControl(), logs)
    assert Reporter.seen["diagnostics/invalid_json_rate"] == 3 / 5
    assert state.log_history[-1]["diagnostics/empty_output_rate"] == 1 / 5
    assert logs["rewards/entity_f1/mean"] == 0.2
    # counts start afresh after each log: nothing analysed since, nothing reported
    logs2 = {"loss": 0.2}
    handler.on_log(TrainingArguments(output_dir="unused", report_to=[]), state, TrainerControl(), logs2)
    assert not any(k.startswith("diagnostics/") for k in logs2)


def test_callback_needs_the_functions_of_one_build():
    with pytest.raises(ValueError, match="one rewards.build"):
        rewards.RewardDiagnosticsCallback(list(rewards.REGISTRY.values()))
    a, _ = rewards.build({"entity_f1": 1})
    b, _ = rewards.build({"entity_f1": 1})
    with pytest.raises(ValueError, match="found 2"):
        rewards.RewardDiagnosticsCallback(a + b)


@pytest.mark.slow
def test_a_real_grpo_run_parses_once_per_batch_and_logs_diagnostics(tiny_model_dir, tmp_path):
    """TRL's GRPOTrainer on the tiny offline model: the rates land in log_history beside TRL's
    reward metrics, and the 7 rewards of the default set share one analysis per step."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from t2g.train.trl_without_gpu import patch_trl_fused_lm_head
    from t2g.task.prompts import build_messages

    patch_trl_fused_lm_head()  # TRL's fused LM head is a Triton kernel; CPU needs the torch one
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rows = [dict(prompt=build_messages(e.text, e.entity_types, e.relation_types), text=e.text, entity_types=e.entity_types,
                 relation_types=e.relation_types, graph=e.graph.to_json()) for e in load_examples("examples")[:8]]
    funcs, weights = rewards.build(rewards.DEFAULT_WEIGHTS, max_completion_length=16, eos_token_id=tok.eos_token_id)
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, logging_steps=1, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=16, bf16=False, report_to=[], reward_weights=weights,
                      gradient_checkpointing=False, save_strategy="no")
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    rewards.RewardDiagnosticsCallback(funcs).install(trainer)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "rewards/entity_f1/mean" in h]
    assert len(logged) == 2
    for entry in logged:
        assert 0.0 <= entry["diagnostics/invalid_json_rate"] <= 1.0
        assert "diagnostics/truncated_rate" in entry
    assert funcs[0].analyzer.n_batches == 2  # one analysis per step for all 7 rewards
