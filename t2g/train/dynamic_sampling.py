"""DAPO's dynamic sampling around a GRPO rollout: groups that teach nothing are replaced.

GRPO's advantage is a completion's reward minus its group's mean: a group whose completions all earn
the same reward (the prompt is solved every time, or failed alike) has zero advantage everywhere, and
its completions cost a forward and backward pass for no gradient. In the quality benchmark's GRPO runs
20-31% of the groups were such flat groups (`frac_reward_zero_std`). `DynamicSampling` scores each
sampled group with the same rewards GRPO will use, and for the flat ones samples fresh prompts from
the training data (a seeded, cycling order), up to `rounds` times; a fresh group replaces a flat one
only when its own rewards differ. TRL then scores the returned batch itself (the gold columns of a
replaced row come back as extra fields, which TRL merges into that row's inputs before its rewards run).

Each refill round is a sampling pass of its own. `spares` fresh groups can instead be sampled in the
first pass, beside the batch: flat groups are replaced from the informative spares first, and only what
is still flat after that goes to the refill rounds; unused spares are dropped (they were sampled by the
current policy for this step only). That pays where a pass costs about the same however many sequences
it holds. On a 2-core CPU it did not: llama.cpp's pass costs in proportion to the tokens it decodes, and
the spares are decoded every step, needed or not (`scripts/bench_grpo_cpu.py`, docs/results.md), so the
default is none.

Logged every generation batch: `dynamic_sampling/flat_groups` (the fraction of groups first sampled
flat), `dynamic_sampling/replaced` (the fraction replaced, by spares or refills),
`dynamic_sampling/still_flat` and `dynamic_sampling/passes` (sampling passes: 1 + refill rounds run;
the rollout logs `rollout/sample_seconds` summed over them).
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable, Sequence

COLUMNS = ("prompt", "id", "text", "entity_types", "relation_types", "graph")  # t2g.train.session.grpo_rows
FLAT = 1e-9  # rewards closer than this count as equal
_SWAPPED = ("prompt_ids", "completion_ids", "logprobs")  # the per-completion fields a replaced group brings


def _key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


class DynamicSampling:
    """A TRL rollout_func wrapping another: `__call__(prompts, trainer)` as TRL calls it."""

    def __init__(self, rollout: Callable[[list, Any], dict], funcs: Sequence[Callable], weights: Sequence[float],
                 rows: Sequence[dict], rounds: int, seed: int, spares: int = 0):
        self.rollout, self.funcs, self.weights, self.rounds = rollout, list(funcs), list(weights), rounds
        self.spares = spares
        self.rows = {_key(r["prompt"]): r for r in rows}
        self.pool = list(self.rows.values())
        random.Random(seed).shuffle(self.pool)
        self.cursor = 0

    def __call__(self, prompts: list, trainer: Any) -> dict:
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        slots = [self.rows[_key(prompts[i])] for i in range(0, len(prompts), group)]
        spares = self._draw(self.spares, {_key(r["prompt"]) for r in slots})
        both = self.rollout(list(prompts) + [r["prompt"] for r in spares for _ in range(group)], trainer)
        out = {k: (v[:len(prompts)] if isinstance(v, list) else v) for k, v in both.items()}
        spare_out = {k: both[k][len(prompts):] for k in _SWAPPED if both.get(k) is not None}
        rewards = self.group_rewards(slots + spares, both, group, trainer)
        flat = [k for k in range(len(slots)) if _is_flat(rewards[k])]
        first_flat, replaced, passes = len(flat), 0, 1
        informative = [k for k in range(len(spares)) if not _is_flat(rewards[len(slots) + k])]
        while flat and informative:
            self._swap(out, flat.pop(0), spare_out, informative.pop(0), group, slots, spares)
            replaced += 1
        for _ in range(self.rounds):
            if not flat:
                break
            fresh = self._draw(len(flat), {_key(r["prompt"]) for r in slots})
            if not fresh:
                break
            new = self.rollout([r["prompt"] for r in fresh for _ in range(group)], trainer)
            passes += 1
            new_rewards = self.group_rewards(fresh, new, group, trainer)
            still = []
            for k, slot in enumerate(flat):
                if k >= len(fresh) or _is_flat(new_rewards[k]):  # the pool ran short, or this one teaches nothing either
                    still.append(slot)
                    continue
                self._swap(out, slot, new, k, group, slots, fresh)
                replaced += 1
            flat = still
        self._log(trainer, {"dynamic_sampling/flat_groups": first_flat / max(1, len(slots)),
                            "dynamic_sampling/replaced": replaced / max(1, len(slots)),
                            "dynamic_sampling/still_flat": len(flat) / max(1, len(slots)),
                            "dynamic_sampling/passes": passes})
        out.update({c: [r[c] for r in slots for _ in range(group)] for c in COLUMNS})
        return out

    @staticmethod
    def _swap(out: dict, slot: int, source: dict, k: int, group: int, slots: list, rows: Sequence[dict]) -> None:
        """Group `k` of `source` (sampled for `rows[k]`) takes the place of the batch's flat group `slot`."""
        slots[slot] = rows[k]
        for name in _SWAPPED:
            if out.get(name) is not None:
                out[name][slot * group:(slot + 1) * group] = source[name][k * group:(k + 1) * group]

    def group_rewards(self, rows: Sequence[dict], out: dict, group: int, trainer: Any) -> list[list[float]]:
        """Each group's weighted rewards, as GRPO will compute them (the same functions and weights)."""
        ids = out["completion_ids"]
        texts = trainer.processing_class.batch_decode(ids, skip_special_tokens=True)
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        columns = {c: [r[c] for r in rows for _ in range(group)] for c in COLUMNS if c != "prompt"}
        prompts = [r["prompt"] for r in rows for _ in range(group)]
        total = [0.0] * len(ids)
        for fn, weight in zip(self.funcs, self.weights):
            for i, score in enumerate(fn(prompts=prompts, completions=completions, completion_ids=ids, **columns)):
                total[i] += weight * (score if score is not None else 0.0)
        return [total[k * group:(k + 1) * group] for k in range(len(rows))]

    def _draw(self, n: int, taken: set[str]) -> list[dict]:
        """n training rows not in the batch, in the pool's seeded order (cycling: a prompt comes back
        after the whole pool went by)."""
        picked: list[dict] = []
        for _ in range(len(self.pool)):
            if len(picked) == n:
                break
            row = self.pool[self.cursor % len(self.pool)]
            self.cursor += 1
            if _key(row["prompt"]) not in taken:
                taken.add(_key(row["prompt"]))
                picked.append(row)
        return picked

    @staticmethod
    def _log(trainer: Any, values: dict[str, float]) -> None:
        metrics = getattr(trainer, "_metrics", None)
        if metrics is None:
            return
        mode = "train" if trainer.model.training else "eval"
        for name, value in values.items():
            metrics[mode][name].append(value)


def _is_flat(rewards: Sequence[float]) -> bool:
    return max(rewards) - min(rewards) < FLAT
