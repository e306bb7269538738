"""Synthetic training data: a teacher model turns raw texts into canonical, filtered, augmented graphs.

    t2g generate --input texts.txt --output data.jsonl --base_url http://127.0.0.1:8000/v1 \\
        --model teacher --entity_types person,organization --relation_types "works for" \\
        --concurrency 4 [--structured auto] [--reasoning]

The settings, each a flag of `t2g generate`, are `t2g.synth.config.GenerateConfig`.

Stages, each visible in the summary:
1. read the texts (`t2g.synth.sources`), drop empty, over-long and near-duplicate ones (`t2g.synth.dedup`);
2. ask the teacher, which sees the text, for a graph (`t2g.synth.teacher`): with --structured=auto
   one probe first picks the structured output the endpoint takes (`t2g.synth.probe`); bounded
   concurrency, retries/backoff/timeouts in `OpenAIChatClient` (an error that blames the request
   is not retried), one atomic append per answer to `<output>.teacher.jsonl`, per-row failures to
   `<output>.errors.jsonl` (`t2g.synth.jobs`);
3. parse with the project's parser, map types onto the inventory (fixed, or built from the
   teacher's proposals in open extraction: `t2g.synth.inventory`), drop what fails a filter
   (`t2g.synth.filters`);
4. optionally, reasoning traces from a teacher that sees text and graph (`<output>.traces.jsonl`);
   a trace whose final answer disagrees with the graph is dropped;
5. augment for type conditioning (`t2g.data.augment`), validate every row, write `<output>` in one
   atomic rename and `<output>.summary.json` (also printed).

Resuming: the teacher and trace files are the only state. A restart with the same settings skips
every id already answered (keyed by the input's id, or a hash of the text), drops a half-written
last line left by a crash, retries the rows that failed, and rebuilds stages 3-5 from the files,
which is cheap and deterministic. Changed settings (model, types, prompt...) are refused rather
than mixed into one dataset. The output is rewritten whole, not appended, because augmentation
needs the whole dataset (its negative types come from the inventory).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from t2g.data.augment import AugmentConfig, augment
from t2g.data.canonical import DataError, Example, write_jsonl
from t2g.files import write_json_atomic
from t2g.infer.openai_client import EndpointPool, OpenAIChatClient, chat_client
from t2g.synth import probe, teacher
from t2g.synth.config import GenerateConfig, Paths, Summary
from t2g.synth.dedup import near_duplicates
from t2g.synth.filters import build_examples
from t2g.synth.jobs import exclusive, load_state, run_jobs
from t2g.synth.sources import SourceText, read_sources
from t2g.task.prompts import PROMPT_VERSION
from t2g.task.schema import validate_graph

# Drop reasons before the teacher (those after it: t2g.synth.filters).
EMPTY_TEXT = "empty_text"
TEXT_TOO_LONG = "text_too_long"
NEAR_DUPLICATE = "near_duplicate_text"
EXACT_DUPLICATE = "exact_duplicate_text"


# --- the pipeline ---------------------------------------------------------------------------


def generate(cfg: GenerateConfig) -> dict:
    """Run (or resume) a generation job; returns the summary (also written beside the output)."""
    paths = Paths(Path(cfg.output))
    paths.output.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(paths.lock):
        summary = Summary()
        texts = _select_texts(cfg, summary)
        answers = _ask_teacher(cfg, paths, texts, summary)
        examples, inventory = build_examples(cfg, texts, answers, summary)
        if cfg.reasoning:
            examples = _add_traces(cfg, paths, examples, summary)
        rows = augment(examples, AugmentConfig(copies=cfg.augment_copies, empty_target_prob=cfg.empty_target_prob),
                       cfg.seed) if cfg.augment_copies else list(examples)
        _check_rows(rows)
        summary.examples = len(examples)
        summary.rows_written = write_jsonl(paths.output, rows)
        summary.inventory = {"entity_types": inventory[0].types, "relation_types": inventory[1].types}
        report = summary.to_dict()
        write_json_atomic(paths.summary, report)
    _print_summary(report, paths)
    return report


def _select_texts(cfg: GenerateConfig, summary: Summary) -> list[SourceText]:
    sources = read_sources(cfg.input, cfg.text_field, cfg.id_field, cfg.txt_split, cfg.split)
    texts = sources.texts[: cfg.limit] if cfg.limit else sources.texts
    summary.input_texts = len(texts) + len(sources.exact_duplicates)
    for where in sources.exact_duplicates:
        summary.drop(summary.before_teacher, EXACT_DUPLICATE, where)
    kept = []
    for src in texts:
        if not src.text:
            summary.drop(summary.before_teacher, EMPTY_TEXT, src.id)
        elif len(src.text) > cfg.max_text_chars:
            summary.drop(summary.before_teacher, TEXT_TOO_LONG, src.id)
        else:
            kept.append(src)
    twins = near_duplicates([s.text for s in kept], cfg.near_dup_threshold)
    for i in twins:
        summary.drop(summary.before_teacher, NEAR_DUPLICATE, kept[i].id)
    return [s for i, s in enumerate(kept) if i not in twins]


# --- stage 2: the teacher -------------------------------------------------------------------


def _settings_key(cfg: GenerateConfig, structured: str) -> str:
    """What makes two teacher answers comparable; a resumed run must match it. `structured` is the
    mode the requests carry (what --structured=auto chose), so auto and that explicit mode resume
    each other's files."""
    settings = {"model": cfg.model, "prompt": PROMPT_VERSION, "entity_types": cfg.entity_types,
                "relation_types": cfg.relation_types, "structured": structured, "ground_spans": cfg.ground_spans,
                "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
    return hashlib.sha1(teacher.json_dumps_compact(settings).encode()).hexdigest()[:12]


def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _client(cfg: GenerateConfig, base_url: str, model: str) -> OpenAIChatClient | EndpointPool:
    """One endpoint, or a pool over a comma-separated list (each request to the least busy one)."""
    return chat_client(base_url, model, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                       retries=cfg.retries, backoff=cfg.backoff)


def _ask_teacher(cfg: GenerateConfig, paths: Paths, texts: list[SourceText], summary: Summary) -> dict[str, dict]:
    modes = {_settings_key(cfg, m): m for m in (teacher.MODES if cfg.structured == "auto" else [cfg.structured])}
    records = load_state(paths.teacher, summary, "settings", modes)
    answers = {s.id: records[s.id] for s in texts if s.id in records and records[s.id]["text_sha1"] == _text_hash(s.text)}
    pending = [s for s in texts if s.id not in answers]
    summary.teacher["answered_before"] = len(answers)
    client = _client(cfg, cfg.base_url, cfg.model)
    cached = modes[next(iter(records.values()))["settings"]] if records else None
    structured = _structured_mode(cfg, paths, client, cached, bool(pending), summary)
    key = _settings_key(cfg, structured)

    def ask(src: SourceText) -> dict:
        messages = teacher.extraction_messages(src.text, cfg.entity_types, cfg.relation_types)
        spans = teacher.candidate_spans(src.text) if cfg.ground_spans else None
        request = teacher.structured_request(structured, cfg.entity_types, cfg.relation_types, spans)
        resp = client.complete(messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens, **request)
        return {"id": src.id, "settings": key, "text_sha1": _text_hash(src.text),
                "completion": resp.content, "finish_reason": resp.finish_reason}

    done = run_jobs(pending, ask, paths.teacher, paths.errors, "teacher", cfg, summary)
    answers.update(done)
    summary.teacher["answered_now"] = len(done)
    summary.teacher["not_answered"] = len(pending) - len(done)  # failed or never attempted
    if cfg.structured not in ("auto", "none") and any(_rejects_structured(e) for e in summary.errors):
        summary.hint = (f"the endpoint rejected requests; if it does not support --structured={cfg.structured}, "
                        f"try --structured=auto (it asks the endpoint once which mode it takes) or "
                        f"--structured={'json_object' if cfg.structured == 'json_schema' else 'none'} "
                        "(json_object: llama-cpp-python; grammar: llama.cpp; none: any endpoint)")
    return answers


def _structured_mode(cfg: GenerateConfig, paths: Paths, client: OpenAIChatClient | EndpointPool,
                     cached: str | None, pending: bool, summary: Summary) -> str:
    """The mode every request of this run carries: --structured itself, or what auto finds (once)."""
    if cfg.structured != "auto":
        summary.structured = {"asked": cfg.structured, "used": cfg.structured}
        return cfg.structured
    if not pending:  # nothing to ask: no probe; the cached answers say what was used
        summary.structured = {"asked": "auto", "used": cached, "why": "nothing left to ask, no probe"}
        return cached or "none"
    choice = probe.choose(client, cfg.entity_types, cfg.relation_types, cfg.ground_spans, prefer=cached)
    print(choice.line(), file=sys.stderr)
    if cached is not None and choice.mode != cached:
        raise DataError(f"{paths.teacher}: its answers were asked with --structured={cached}, but the endpoint now "
                        f"takes {choice.mode} ({choice.why}); use another --output, or delete this file to regenerate")
    summary.structured = {"asked": "auto", "used": choice.mode, "why": choice.why}
    return choice.mode


def _rejects_structured(error: dict) -> bool:
    """A request the endpoint refused as malformed; llama-cpp-python answers 500 for a bad field."""
    text = error["error"]
    return error.get("status") in (400, 404, 422) or "response_format" in text or "grammar" in text


# --- stage 4: reasoning traces --------------------------------------------------------------


def _trace_key(ex: Example) -> str:
    """A trace belongs to one (text, types, graph); any change asks for a new one."""
    blob = teacher.json_dumps_compact([ex.text, ex.entity_types, ex.relation_types, ex.graph.to_dict()])
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


def _add_traces(cfg: GenerateConfig, paths: Paths, examples: list[Example], summary: Summary) -> list[Example]:
    model = cfg.reasoning_model or cfg.model
    settings = hashlib.sha1(f"{model}|{PROMPT_VERSION}|{cfg.trace_max_tokens}".encode()).hexdigest()[:12]
    records = load_state(paths.traces, summary, "settings", {settings})
    have = {ex.id: records[ex.id] for ex in examples if ex.id in records and records[ex.id]["key"] == _trace_key(ex)}
    pending = [ex for ex in examples if ex.id not in have]
    client = _client(cfg, cfg.reasoning_base_url or cfg.base_url, model)

    def ask(ex: Example) -> dict:
        messages = teacher.trace_messages(ex.text, ex.entity_types, ex.relation_types, ex.graph)
        content = client.chat(messages, temperature=cfg.temperature, max_tokens=cfg.trace_max_tokens)
        return {"id": ex.id, "settings": settings, "key": _trace_key(ex), "completion": content}

    have.update(run_jobs(pending, ask, paths.traces, paths.errors, "trace", cfg, summary))
    out = []
    for ex in examples:
        if ex.id not in have:
            trace, reason = None, "trace_request_failed"  # the error is in the errors file
        else:
            trace, reason = teacher.verify_trace(have[ex.id]["completion"], ex.graph)
        if trace is None:
            summary.drop(summary.traces, reason, ex.id)
            if cfg.require_trace:
                continue
        else:
            summary.traces["kept"] += 1
        out.append(replace(ex, reasoning=trace))
    return out


# --- stage 5: checks and report -------------------------------------------------------------


def _check_rows(rows: Sequence[Example]) -> None:
    """Every row must load as canonical data and satisfy the task contract; anything else is a bug."""
    for ex in rows:
        again = Example.from_dict(json.loads(json.dumps(ex.to_dict())), f"generated row {ex.id!r}")
        problems = validate_graph(again.graph, again.text, again.entity_types, again.relation_types)
        if problems:
            raise AssertionError(f"generated row {ex.id!r} is invalid: {problems[0]} (a bug in t2g.synth.generate)")


def _print_summary(report: dict, paths: Paths) -> None:
    lines = [f"t2g generate: {report['input_texts']} input texts -> {report['examples_kept']} examples "
             f"-> {report['rows_written']} rows in {paths.output}"]
    for title, key in (("dropped before the teacher", "dropped_before_teacher"),
                       ("dropped after the teacher", "dropped_after_teacher"), ("traces", "traces")):
        if report[key]:
            lines.append(f"  {title}: " + ", ".join(f"{k}={v}" for k, v in sorted(report[key].items())))
    lines.append("  teacher: " + ", ".join(f"{k}={v}" for k, v in report["teacher"].items()))
    if report["failed_rows"]:
        lines.append(f"  {report['failed_rows']} rows failed (see {paths.errors}); run the same command again to "
                     f"retry them. First error: {report['first_errors'][0]['error']}")
    if report.get("stopped_early"):
        lines.append(f"  {report['stopped_early']}: fix the endpoint (or the flags) and run the same command again")
    if report.get("hint"):
        lines.append(f"  hint: {report['hint']}")
    lines.append(f"  summary: {paths.summary}")
    print("\n".join(lines), file=sys.stderr)
