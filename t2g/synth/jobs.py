"""The resumable part of `t2g generate`: requests with bounded concurrency, each answer appended to
its file as it arrives, the files read back on a restart, and the lock that keeps one job per output.

The teacher and trace files are a job's only state: one JSON line per answered row, keyed by id
and stamped with the settings that made it. A crash can leave a half-written last line; reading
the file back cuts it off, so that row is asked again.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Collection, Sequence

from t2g.data.canonical import DataError, Example
from t2g.files import append_jsonl_line
from t2g.infer.openai_client import EndpointError
from t2g.synth.config import GenerateConfig, Summary
from t2g.synth.sources import SourceText

# The run's first rows all failing with this many identical errors that no retry can fix (a request
# the endpoint refuses, e.g. an unknown --structured field) stop it: every other row would fail too.
SAME_FATAL_STOP = 3

class exclusive:
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


def run_jobs(items: Sequence[SourceText] | Sequence[Example], call: Callable, out_path: Path, err_path: Path,
              stage: str, cfg: GenerateConfig, summary: Summary) -> dict[str, dict]:
    """Call `call(item)` with bounded concurrency; append each result (or error) as it arrives."""
    from tqdm import tqdm  # lazy: only a running job needs it

    done: dict[str, dict] = {}
    streak = failed = same_fatal = 0
    signature: tuple | None = None
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
                             "attempts": exc.attempts, "retryable": not exc.fatal,
                             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                    append_jsonl_line(err, error)
                    summary.errors.append(error)
                    failed += 1
                    streak += 1
                    first_rows = not done and same_fatal == failed - 1  # every result so far: this error
                    if exc.fatal and first_rows and signature in (None, (exc.status, exc.detail)):
                        signature, same_fatal = (exc.status, exc.detail), same_fatal + 1
                    left = len(items) - len(done) - failed
                    if same_fatal >= SAME_FATAL_STOP and left:
                        summary.stopped_early = (f"{stage}: stopped after the first {same_fatal} rows failed with the "
                                                 f"same error, which no retry can fix ({exc.detail}); "
                                                 f"{left} rows not attempted")
                        break
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


def load_state(path: Path, summary: Summary, key_field: str, keys: Collection[str]) -> dict[str, dict]:
    """The records of a teacher/trace file by id (the last wins); repairs a crash's partial line.

    Every record must carry the same one of `keys` (several: --structured=auto, one per mode it may
    choose; the file's records then say which one the earlier run chose)."""
    if not path.exists():
        return {}
    _drop_partial_last_line(path, summary)
    records: dict[str, dict] = {}
    first = None
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{lineno}: corrupt record (not JSON); this file is the job's cache: "
                                "delete it to regenerate, or fix the line") from None
            first = record.get(key_field) if first is None else first
            if record.get(key_field) not in keys or record.get(key_field) != first:
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
