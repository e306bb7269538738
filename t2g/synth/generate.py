"""Synthetic training data: a teacher model turns raw texts into canonical, filtered, augmented graphs.

    t2g generate --input texts.txt --output data.jsonl --base_url http://127.0.0.1:8000/v1 \\
        --model teacher --entity_types person,organization --relation_types "works for" \\
        --concurrency 4 --structured json_schema [--reasoning]

Stages, each visible in the summary:
1. read the texts (`t2g.synth.sources`), drop empty, over-long and near-duplicate ones (`t2g.synth.dedup`);
2. ask the teacher, which sees the text, for a graph (`t2g.synth.teacher`): bounded concurrency,
   retries/backoff/timeouts in `OpenAIChatClient`, one atomic append per answer to
   `<output>.teacher.jsonl`, per-row failures to `<output>.errors.jsonl`;
3. parse with the project's parser, map types onto the inventory (fixed, or built from the
   teacher's proposals in open extraction: `t2g.synth.inventory`), drop what fails a filter;
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

import fcntl
import hashlib
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from t2g.data.augment import AugmentConfig, augment, restrict_graph
from t2g.data.canonical import DataError, Example, write_jsonl
from t2g.synth.dedup import near_duplicates
from t2g.synth.inventory import Inventory, count_types
from t2g.files import append_jsonl_line, write_json_atomic
from t2g.infer.openai_client import EndpointError, EndpointPool, OpenAIChatClient, chat_client, split_base_urls
from t2g.task.parsing import parse_completion
from t2g.task.prompts import PROMPT_VERSION
from t2g.task.schema import DANGLING_HEAD, DANGLING_TAIL, SPAN_NOT_IN_TEXT, UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE, Entity, Graph, Relation, normalize, validate_graph
from t2g.synth.sources import SourceText, read_sources
from t2g.synth import teacher

# Drop reasons after the teacher, in the order a row is checked (each dropped row counts once).
OUT_OF_INVENTORY = "out_of_inventory_type"
UNGROUNDED = "ungrounded_span"
DANGLING = "dangling_relation"
EMPTY_GRAPH = "empty_graph"
OVERSIZED = "oversized_graph"
# Before the teacher.
EMPTY_TEXT = "empty_text"
TEXT_TOO_LONG = "text_too_long"
NEAR_DUPLICATE = "near_duplicate_text"
EXACT_DUPLICATE = "exact_duplicate_text"


@dataclass
class GenerateConfig:
    input: str
    output: str
    base_url: str
    model: str
    entity_types: list[str] | None = None  # both None: open extraction
    relation_types: list[str] | None = None
    text_field: str = "text"
    id_field: str = "id"
    txt_split: str = "lines"
    split: str = "train"
    limit: int | None = None
    structured: str = "json_schema"
    ground_spans: bool = False
    concurrency: int = 4
    max_consecutive_failures: int = 20
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 2.0
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 1024
    max_text_chars: int = 4000
    max_entities: int = 50
    max_relations: int = 100
    keep_empty: bool = False
    near_dup_threshold: float = 0.9
    min_type_count: int = 2
    max_types: int = 30
    reasoning: bool = False
    reasoning_model: str | None = None
    reasoning_base_url: str | None = None
    trace_max_tokens: int = 2048
    require_trace: bool = False
    augment_copies: int = 1
    empty_target_prob: float = 0.1
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.entity_types is None) != (self.relation_types is None):
            raise DataError("give both --entity_types and --relation_types (a fixed inventory) or neither (open extraction)")
        if self.entity_types is not None and not self.entity_types:
            raise DataError("--entity_types is empty: give at least one entity type, or neither flag for open extraction")
        if not str(self.output).endswith(".jsonl"):
            raise DataError(f"--output={self.output!r}: must end with .jsonl (side files are named after it)")
        if self.structured not in teacher.STRUCTURED:
            raise DataError(f"--structured={self.structured!r}: use one of {', '.join(teacher.STRUCTURED)}")
        if self.fixed:
            try:  # catch "person" + "persons" now, not after an hour of teacher calls
                Inventory.fixed(self.entity_types, "--entity_types")
                Inventory.fixed(self.relation_types, "--relation_types")
            except ValueError as exc:
                raise DataError(str(exc)) from None
        if self.ground_spans and self.structured == "none":
            raise DataError("--ground_spans needs structured output: give --structured json_schema, json_object or grammar")
        for url_flag in ("base_url", "reasoning_base_url"):
            value = getattr(self, url_flag)
            if value is None:
                continue
            try:  # a comma-separated list fans requests out over several endpoints serving the same model
                urls = split_base_urls(value)
            except ValueError as exc:
                raise DataError(f"--{url_flag}: {exc}") from None
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise DataError(f"--{url_flag}={url!r}: give the endpoint's URL, e.g. http://127.0.0.1:8000/v1 "
                                    f"(several: comma-separated)")
        bad = [f"--{name} must be {rule}" for name, ok, rule in (
            ("concurrency", self.concurrency >= 1, ">= 1"), ("max_tokens", self.max_tokens >= 1, ">= 1"),
            ("trace_max_tokens", self.trace_max_tokens >= 1, ">= 1"),
            ("max_consecutive_failures", self.max_consecutive_failures >= 1, ">= 1"),
            ("timeout", self.timeout > 0, "> 0"), ("retries", self.retries >= 0, ">= 0"),
            ("backoff", self.backoff >= 0, ">= 0"), ("augment_copies", self.augment_copies >= 0, ">= 0"),
            ("empty_target_prob", 0 <= self.empty_target_prob <= 1, "in [0, 1]"),
            ("near_dup_threshold", self.near_dup_threshold > 0, "> 0 (above 1 turns the filter off)"),
            ("max_text_chars", self.max_text_chars >= 1, ">= 1"), ("min_type_count", self.min_type_count >= 1, ">= 1"),
            ("max_types", self.max_types >= 1, ">= 1"), ("limit", self.limit is None or self.limit >= 1, ">= 1"),
        ) if not ok]
        if bad:
            raise DataError("; ".join(bad))

    @property
    def fixed(self) -> bool:
        return self.entity_types is not None


@dataclass(frozen=True)
class Paths:
    output: Path

    def side(self, suffix: str) -> Path:
        return self.output.with_name(self.output.name[: -len(".jsonl")] + suffix)

    @property
    def teacher(self) -> Path:
        return self.side(".teacher.jsonl")

    @property
    def traces(self) -> Path:
        return self.side(".traces.jsonl")

    @property
    def errors(self) -> Path:
        return self.side(".errors.jsonl")

    @property
    def summary(self) -> Path:
        return self.side(".summary.json")

    @property
    def lock(self) -> Path:
        return self.side(".lock")


@dataclass
class Summary:
    """Counts of everything that happened, so that every input text is accounted for."""

    input_texts: int = 0
    before_teacher: Counter = field(default_factory=Counter)
    drop_examples: dict[str, list[str]] = field(default_factory=dict)
    teacher: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    traces: Counter = field(default_factory=Counter)
    examples: int = 0
    rows_written: int = 0
    recovered_partial_lines: int = 0
    errors: list[dict] = field(default_factory=list)
    inventory: dict[str, list[str]] = field(default_factory=dict)
    hint: str = ""
    stopped_early: str = ""

    def drop(self, counter: Counter, reason: str, ex_id: str) -> None:
        counter[reason] += 1
        ids = self.drop_examples.setdefault(reason, [])
        if len(ids) < 5:
            ids.append(ex_id)

    def to_dict(self) -> dict:
        return {
            "input_texts": self.input_texts,
            "dropped_before_teacher": dict(self.before_teacher),
            "teacher": dict(self.teacher),
            "dropped_after_teacher": dict(self.dropped),
            "examples_kept": self.examples,
            "traces": dict(self.traces),
            "rows_written": self.rows_written,
            "recovered_partial_lines": self.recovered_partial_lines,
            "failed_rows": len(self.errors),
            "first_errors": self.errors[:5],
            "example_ids_per_drop_reason": self.drop_examples,
            "inventory": self.inventory,
            **({"hint": self.hint} if self.hint else {}),
            **({"stopped_early": self.stopped_early} if self.stopped_early else {}),
        }


# --- the pipeline ---------------------------------------------------------------------------


def generate(cfg: GenerateConfig) -> dict:
    """Run (or resume) a generation job; returns the summary (also written beside the output)."""
    paths = Paths(Path(cfg.output))
    paths.output.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(paths.lock):
        summary = Summary()
        texts = _select_texts(cfg, summary)
        answers = _ask_teacher(cfg, paths, texts, summary)
        examples, inventory = _build_examples(cfg, texts, answers, summary)
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


class _exclusive:
    """An advisory lock beside the output: two runs appending to the same files would interleave."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.f = self.path.open("a")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.close()
            raise DataError(f"{self.path}: another t2g generate is writing this output; wait for it or pick another --output") from None

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


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


def _settings_key(cfg: GenerateConfig) -> str:
    """What makes two teacher answers comparable; a resumed run must match it."""
    settings = {"model": cfg.model, "prompt": PROMPT_VERSION, "entity_types": cfg.entity_types,
                "relation_types": cfg.relation_types, "structured": cfg.structured, "ground_spans": cfg.ground_spans,
                "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
    return hashlib.sha1(teacher.json_dumps_compact(settings).encode()).hexdigest()[:12]


def _text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _client(cfg: GenerateConfig, base_url: str, model: str) -> OpenAIChatClient | EndpointPool:
    """One endpoint, or a pool over a comma-separated list (each request to the least busy one)."""
    return chat_client(base_url, model, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                       retries=cfg.retries, backoff=cfg.backoff)


def _ask_teacher(cfg: GenerateConfig, paths: Paths, texts: list[SourceText], summary: Summary) -> dict[str, dict]:
    key = _settings_key(cfg)
    records = _load_state(paths.teacher, summary, "settings", key)
    answers = {s.id: records[s.id] for s in texts if s.id in records and records[s.id]["text_sha1"] == _text_hash(s.text)}
    pending = [s for s in texts if s.id not in answers]
    summary.teacher["answered_before"] = len(answers)
    client = _client(cfg, cfg.base_url, cfg.model)

    def ask(src: SourceText) -> dict:
        messages = teacher.extraction_messages(src.text, cfg.entity_types, cfg.relation_types)
        spans = teacher.candidate_spans(src.text) if cfg.ground_spans else None
        request = teacher.structured_request(cfg.structured, cfg.entity_types, cfg.relation_types, spans)
        resp = client.complete(messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens, **request)
        return {"id": src.id, "settings": key, "text_sha1": _text_hash(src.text),
                "completion": resp.content, "finish_reason": resp.finish_reason}

    done = _run_jobs(pending, ask, paths.teacher, paths.errors, "teacher", cfg, summary)
    answers.update(done)
    summary.teacher["answered_now"] = len(done)
    summary.teacher["not_answered"] = len(pending) - len(done)  # failed or never attempted
    if cfg.structured != "none" and any(_rejects_structured(e) for e in summary.errors):
        summary.hint = (f"the endpoint rejected requests; if it does not support --structured={cfg.structured}, "
                        f"try --structured={'json_object' if cfg.structured == 'json_schema' else 'none'} "
                        "(json_object: llama-cpp-python; grammar: llama.cpp; none: any endpoint)")
    return answers


def _rejects_structured(error: dict) -> bool:
    """A request the endpoint refused as malformed; llama-cpp-python answers 500 for a bad field."""
    text = error["error"]
    return error.get("status") in (400, 404, 422) or "response_format" in text or "grammar" in text


def _run_jobs(items: Sequence[SourceText] | Sequence[Example], call: Callable, out_path: Path, err_path: Path,
              stage: str, cfg: GenerateConfig, summary: Summary) -> dict[str, dict]:
    """Call `call(item)` with bounded concurrency; append each result (or error) as it arrives."""
    from tqdm import tqdm  # lazy: only a running job needs it

    done: dict[str, dict] = {}
    streak = failed = 0
    if not items:
        return done
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix=f"t2g-{stage}")
    try:
        with out_path.open("a", encoding="utf-8") as out, err_path.open("a", encoding="utf-8") as err:
            futures = {pool.submit(call, item): item for item in items}
            bar = tqdm(as_completed(futures), total=len(futures), desc=f"{stage} ({cfg.concurrency} at a time)",
                       unit="row", disable=not cfg.progress, file=sys.stderr)
            for fut in bar:
                item = futures[fut]
                try:
                    record = fut.result()
                except EndpointError as exc:  # per-row: record it, keep going; a rerun retries the row
                    error = {"id": item.id, "stage": stage, "error": str(exc), "status": exc.status,
                             "attempts": exc.attempts, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                    append_jsonl_line(err, error)
                    summary.errors.append(error)
                    failed += 1
                    streak += 1
                    if streak >= cfg.max_consecutive_failures:
                        # A dead or misconfigured endpoint: stop rather than fail every remaining row slowly.
                        summary.stopped_early = (f"{stage}: stopped after {streak} failures in a row; "
                                                 f"{len(items) - len(done) - failed} rows not attempted")
                        break
                    continue
                streak = 0
                append_jsonl_line(out, record)
                done[item.id] = record
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C or a bug: stop sending requests
    return done


def _load_state(path: Path, summary: Summary, key_field: str, key: str) -> dict[str, dict]:
    """The records of a teacher/trace file by id (the last wins); repairs a crash's partial line."""
    if not path.exists():
        return {}
    _drop_partial_last_line(path, summary)
    records: dict[str, dict] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{lineno}: corrupt record (not JSON); this file is the job's cache: "
                                "delete it to regenerate, or fix the line") from None
            if record.get(key_field) != key:
                raise DataError(f"{path}:{lineno}: made with different settings (model, types, --structured, "
                                "temperature, max_tokens or prompt version); use another --output, "
                                "or delete this file to regenerate")
            records[record["id"]] = record
    return records


def _drop_partial_last_line(path: Path, summary: Summary) -> None:
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1  # 0 when the only line is partial
    with path.open("r+b") as f:
        f.truncate(cut)
    summary.recovered_partial_lines += 1
    print(f"t2g generate: {path}: dropped a half-written last line ({len(data) - cut} bytes, "
          "from an interrupted run); that row is asked again", file=sys.stderr)


# --- stage 3: parse, map types, filter ------------------------------------------------------


def _build_examples(cfg: GenerateConfig, texts: list[SourceText], answers: dict[str, dict],
                    summary: Summary) -> tuple[list[Example], tuple[Inventory, Inventory]]:
    parsed = {}
    for src in texts:
        if src.id not in answers:
            continue  # failed this run: recorded in the errors file, retried on the next run
        result = parse_completion(answers[src.id]["completion"])
        if not result.ok:
            summary.drop(summary.dropped, f"parse_{result.error}", src.id)
            continue
        parsed[src.id] = result.graph
    inventory = _inventory(cfg, parsed.values())
    examples = []
    for src in texts:
        if src.id in parsed:
            ex, reason = _filter(cfg, src, parsed[src.id], inventory)
            if ex is None:
                summary.drop(summary.dropped, reason, src.id)
            else:
                examples.append(ex)
    return examples, inventory


def _inventory(cfg: GenerateConfig, graphs: Iterable[Graph]) -> tuple[Inventory, Inventory]:
    if cfg.fixed:
        return Inventory.fixed(cfg.entity_types, "--entity_types"), Inventory.fixed(cfg.relation_types, "--relation_types")
    graphs = list(graphs)
    ents = count_types([e.type for e in g.entities] for g in graphs)
    rels = count_types([r.type for r in g.relations] for g in graphs)
    return (Inventory.from_counts(ents, cfg.min_type_count, cfg.max_types),
            Inventory.from_counts(rels, cfg.min_type_count, cfg.max_types))


def _filter(cfg: GenerateConfig, src: SourceText, graph: Graph,
            inventory: tuple[Inventory, Inventory]) -> tuple[Example | None, str]:
    inv_e, inv_r = inventory
    mapped, unknown = _map_types(graph, inv_e, inv_r)
    if unknown and cfg.fixed:
        return None, OUT_OF_INVENTORY  # the teacher ignored the given list: the rest is suspect too
    if not cfg.fixed:
        # Open extraction: a rare type is not in the prompt's list, so its items are not asked for.
        mapped = restrict_graph(mapped, inv_e.types, inv_r.types)
    graph = _dedupe(mapped)
    kinds = {v.kind for v in validate_graph(graph, src.text, inv_e.types, inv_r.types)}
    if kinds & {UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE}:
        return None, OUT_OF_INVENTORY
    if SPAN_NOT_IN_TEXT in kinds:
        return None, UNGROUNDED
    if kinds & {DANGLING_HEAD, DANGLING_TAIL}:
        return None, DANGLING
    if graph.is_empty and not cfg.keep_empty:
        return None, EMPTY_GRAPH
    if len(graph.entities) > cfg.max_entities or len(graph.relations) > cfg.max_relations:
        return None, OVERSIZED
    return Example(src.id, src.text, inv_e.types, inv_r.types, graph), ""


def _map_types(graph: Graph, inv_e: Inventory, inv_r: Inventory) -> tuple[Graph, bool]:
    """Types respelled as the inventory spells them; unknown ones kept as given, flagged."""
    unknown = False
    ents = []
    for e in graph.entities:
        name = inv_e.canonical(e.type)
        unknown |= name is None
        ents.append(Entity(e.text, name or e.type))
    rels = []
    for r in graph.relations:
        name = inv_r.canonical(r.type)
        unknown |= name is None
        rels.append(Relation(r.head, r.tail, name or r.type))
    return Graph(tuple(ents), tuple(rels)), unknown


def _dedupe(graph: Graph) -> Graph:
    """Repeated entities/relations (same normalised key) collapse to the first: harmless, not a drop."""
    seen_e, seen_r = set(), set()
    ents = [e for e in graph.entities if not ((k := (normalize(e.text), normalize(e.type))) in seen_e or seen_e.add(k))]
    rels = [r for r in graph.relations
            if not ((k := (normalize(r.head), normalize(r.type), normalize(r.tail))) in seen_r or seen_r.add(k))]
    return Graph(tuple(ents), tuple(rels))


# --- stage 4: reasoning traces --------------------------------------------------------------


def _trace_key(ex: Example) -> str:
    """A trace belongs to one (text, types, graph); any change asks for a new one."""
    blob = teacher.json_dumps_compact([ex.text, ex.entity_types, ex.relation_types, ex.graph.to_dict()])
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


def _add_traces(cfg: GenerateConfig, paths: Paths, examples: list[Example], summary: Summary) -> list[Example]:
    model = cfg.reasoning_model or cfg.model
    settings = hashlib.sha1(f"{model}|{PROMPT_VERSION}|{cfg.trace_max_tokens}".encode()).hexdigest()[:12]
    records = _load_state(paths.traces, summary, "settings", settings)
    have = {ex.id: records[ex.id] for ex in examples if ex.id in records and records[ex.id]["key"] == _trace_key(ex)}
    pending = [ex for ex in examples if ex.id not in have]
    client = _client(cfg, cfg.reasoning_base_url or cfg.base_url, model)

    def ask(ex: Example) -> dict:
        messages = teacher.trace_messages(ex.text, ex.entity_types, ex.relation_types, ex.graph)
        content = client.chat(messages, temperature=cfg.temperature, max_tokens=cfg.trace_max_tokens)
        return {"id": ex.id, "settings": settings, "key": _trace_key(ex), "completion": content}

    have.update(_run_jobs(pending, ask, paths.traces, paths.errors, "trace", cfg, summary))
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
        lines.append(f"  {report['stopped_early']}: fix the endpoint and run the same command again")
    if report.get("hint"):
        lines.append(f"  hint: {report['hint']}")
    lines.append(f"  summary: {paths.summary}")
    print("\n".join(lines), file=sys.stderr)
