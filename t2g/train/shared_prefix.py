"""GRPO's loss with each group's prompt computed once: `shared_prefix_trainer(GRPOTrainer)`.

The G completions of one prompt share its tokens, yet TRL runs prompt + completion as G separate
rows: with t2g's prompts (~275 tokens) and completions (~100) four of every five tokens of the
forward and backward are the prompt again. Here the rows of a call that share an (unpadded) prompt
are packed into one sequence: the prompt once, then every completion as a branch, with explicit
position ids and a 4D mask in which a branch sees the prompt and its own past only. Gradients of
all branches meet in the one prompt computation, which is the sum the G rows would give: the
per-token log-probs, entropies and gradients are TRL's up to float rounding. On a CPU each group is a
forward of its own (no group padded to a longer one's length); elsewhere a call's groups share one.

    Trainer = shared_prefix_trainer(GRPOTrainer)       # stock TRL's class only, see below
    trainer = Trainer(model=..., args=..., ...)         # GRPOTrainer's arguments, unchanged

- `_prepare_inputs` shuffles whole groups (blocks of rows with one prompt) instead of rows, so
  each micro-batch holds whole groups when per_device_train_batch_size % num_generations == 0.
  Otherwise a group is split between micro-batches: each part still shares its prompt, and the
  results are still exact (grouping is by prompt tokens, never by position), only less is saved;
  the constructor says so once.
- Falls back to TRL's computation (per call, said once per reason on stderr) for multimodal inputs,
  the MoE aux loss, attention other than sdpa/eager (flash/flex take no custom 4D mask), sliding
  windows (the custom mask replaces them), and batches that are not left-padded prompts followed by
  right-padded completions.
- Counters: `self._metrics[mode]["shared_prefix/tokens"]` (positions the packed forward computes)
  beside `".../plain_tokens"` (those TRL's would) and `".../fallback"` (1 when a call fell back),
  one value per call (old/ref log-probs and the loss); running totals in `self.shared_prefix_totals`.
- Only for TRL's own GRPOTrainer: stock TRL, t2g's hf backend and unsloth's CPU backend (which
  trains with stock TRL). unsloth's CUDA trainer (its compiled UnslothGRPOTrainer) rewrites
  `_get_per_token_logps_and_entropies`, `compute_loss` and `_prepare_inputs`, and its loss does not
  go through this method; the factory refuses it rather than silently doing nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

ATTENTION_WITH_4D_MASK = ("sdpa", "eager")
MULTIMODAL_ARGS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
                   "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")
OVERRIDDEN = ("_prepare_inputs", "_get_per_token_logps_and_entropies", "compute_loss", "_compute_loss")
TRL_MODULE = "trl.trainer.grpo_trainer"
PREFIX, BRANCH0, PAD = 0, 1, -1  # segment ids in a packed row: the prompt, the branches (1, 2, ...), padding


# ---------------------------------------------------------------------------------------------
# Whole-group shuffle


def group_blocks(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> list[range]:
    """Runs of consecutive rows with the same prompt: TRL's sampler yields each prompt G times in a row."""
    rows = prompt_ids.size(0)
    if rows == 0:
        return []
    same = ((prompt_ids[1:] == prompt_ids[:-1]) & (prompt_mask[1:] == prompt_mask[:-1])).all(dim=1)
    starts = [0] + [i + 1 for i in torch.nonzero(~same).flatten().tolist()] + [rows]
    return [range(a, b) for a, b in zip(starts, starts[1:])]


def group_permutation(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, generator=None) -> torch.Tensor:
    """A random order of the rows that moves whole groups and keeps the order inside each (TRL's
    row shuffle draws from torch's global generator, seeded by the Trainer; so does this by default)."""
    blocks = group_blocks(prompt_ids, prompt_mask)
    order = torch.randperm(len(blocks), generator=generator).tolist()
    return torch.tensor([i for b in order for i in blocks[b]], dtype=torch.long)


def permute_rows(batch: dict, permutation: torch.Tensor) -> dict:
    """`batch` with every per-row value reordered (as TRL's shuffle_sequence_dict; scalars as they are)."""
    def permute(v):
        if v is None or (isinstance(v, torch.Tensor) and v.ndim == 0):
            return v
        if isinstance(v, torch.Tensor):
            return v[permutation.to(v.device)]
        return [v[i] for i in permutation.tolist()]

    return {key: permute(value) for key, value in batch.items()}


# ---------------------------------------------------------------------------------------------
# Packing rows that share a prompt


@dataclass
class Pack:
    """One forward: a few packed rows, and where their scored positions go in TRL's (B, C) layout."""

    input_ids: torch.Tensor  # (n, T)
    position_ids: torch.Tensor  # (n, T)
    segments: torch.Tensor  # (n, T): PREFIX, BRANCH0 + i for the i-th completion, PAD
    shift_labels: torch.Tensor  # (n, T): the token each position scores (already shifted), -100 elsewhere
    source: tuple[torch.Tensor, torch.Tensor]  # (packed row, position) of every scored token
    target: tuple[torch.Tensor, torch.Tensor]  # (row, completion column) in the caller's batch


def attention_mask_4d(segments: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(n, 1, T, T): causal; a prompt position sees the prompt, a branch the prompt and its own past.

    Padding sees the prompt, earlier padding and itself, so no query row is empty (sdpa would give NaN
    there, and NaN times a zero gradient is still NaN in the backward). bool (True = attend) for sdpa;
    with `dtype`, the additive float mask eager attention adds to its scores.
    """
    length = segments.size(1)
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)
    allowed = causal & ((key == PREFIX) | (key == query))
    allowed = allowed.unsqueeze(1)
    if dtype is None:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=segments.device).masked_fill(~allowed, torch.finfo(dtype).min)


def plan_packs(input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
               batch_size: int | None = None, group_per_pack: bool = False) -> list[Pack] | str:
    """The packed forwards for TRL's `(prompt | completion)` rows, or why they cannot be packed.

    A group packs as `p[:-1]`, then for each completion `[p[-1]] + c[:-1]` at positions P-1..P-2+L:
    the copy of the prompt's last token scores `c[0]`, as that token does in TRL's row. Rows whose
    completion is fully masked score nothing and are left out (zeros, as TRL gives). Groups go to one
    pack while it holds at most `batch_size` of the caller's rows (a larger group goes alone): that is
    what the caller's chunking bounds. With `group_per_pack`, every group is a forward of its own, so
    that no group is padded to a longer one's length.
    """
    rows, width = input_ids.shape
    prompt_width = width - logits_to_keep
    if prompt_width < 1 or logits_to_keep < 1:
        return "no prompt or no completion columns"
    mask = attention_mask.bool()
    prompt_mask, completion_mask = mask[:, :prompt_width], mask[:, prompt_width:]
    steps_up, steps_down = prompt_mask.int().diff(dim=1), completion_mask.int().diff(dim=1)
    if (steps_up < 0).any() or (steps_down > 0).any():
        return "prompts not left-padded or completions not right-padded"
    prompt_lengths, completion_lengths = prompt_mask.sum(1).tolist(), completion_mask.sum(1).tolist()
    if min(prompt_lengths) < 1:
        return "an empty prompt"
    ids = input_ids.tolist()
    groups: dict[tuple, list[int]] = {}
    for row in range(rows):
        if completion_lengths[row] > 0:
            groups.setdefault(tuple(ids[row][prompt_width - prompt_lengths[row]:prompt_width]), []).append(row)
    if not groups:
        return "no completion token to score"
    limit = batch_size or rows
    chunks: list[list[tuple]] = [[]]
    for prompt, members in groups.items():
        if chunks[-1] and (group_per_pack or sum(len(groups[p]) for p in chunks[-1]) + len(members) > limit):
            chunks.append([])
        chunks[-1].append(prompt)
    return [_pack(chunk, groups, ids, prompt_width, completion_lengths, input_ids.device) for chunk in chunks]


def _pack(prompts: list[tuple], groups: dict, ids: list[list[int]], prompt_width: int,
          completion_lengths: list[int], device) -> Pack:
    packed = []  # per packed row: (tokens, positions, segments, labels)
    source, target = [], []
    for n, prompt in enumerate(prompts):
        head = len(prompt) - 1
        tokens, positions = list(prompt[:-1]), list(range(head))
        segments, labels = [PREFIX] * head, [-100] * head
        for branch, row in enumerate(groups[prompt]):
            completion = ids[row][prompt_width:prompt_width + completion_lengths[row]]
            start = len(tokens)
            tokens += [prompt[-1]] + completion[:-1]
            positions += range(head, head + len(completion))
            segments += [BRANCH0 + branch] * len(completion)
            labels += completion
            source += [(n, start + j) for j in range(len(completion))]
            target += [(row, j) for j in range(len(completion))]
        packed.append((tokens, positions, segments, labels))
    length = max(len(p[0]) for p in packed)

    def padded(i: int, fill: int) -> torch.Tensor:
        return torch.tensor([p[i] + [fill] * (length - len(p[i])) for p in packed], dtype=torch.long, device=device)

    src, dst = torch.tensor(source, device=device).t(), torch.tensor(target, device=device).t()
    return Pack(padded(0, 0), padded(1, 0), padded(2, PAD), padded(3, -100), (src[0], src[1]), (dst[0], dst[1]))


# ---------------------------------------------------------------------------------------------
# The trainer


class SharedPrefixMixin:
    """Put before a GRPOTrainer class (see `shared_prefix_trainer`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shared_prefix_totals = {"calls": 0, "fallback_calls": 0, "tokens": 0, "plain_tokens": 0}
        self._shared_prefix_said: set[str] = set()
        if self.args.per_device_train_batch_size % self.num_generations:
            self._shared_prefix_say(
                f"per_device_train_batch_size={self.args.per_device_train_batch_size} is not a multiple of "
                f"num_generations={self.num_generations}: groups are split between micro-batches, and each part "
                "computes its prompt once (exact, but less is saved)")

    def _shared_prefix_say(self, message: str) -> None:
        if message not in self._shared_prefix_said:
            self._shared_prefix_said.add(message)
            print(f"t2g: shared prefix: {message}", file=sys.stderr)

    def _prepare_inputs(self, generation_batch):
        # TRL's method (grpo_trainer.py:1480-1509) with the row shuffle replaced by a shuffle of whole groups.
        from trl.trainer.utils import split_pixel_values_by_grid, split_tensor_dict, unsplit_pixel_values_by_grid

        if not self.model.training:
            return self._generate_and_score_completions(generation_batch)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            batch = split_pixel_values_by_grid(self._generate_and_score_completions(generation_batch))
            batch = permute_rows(batch, group_permutation(batch["prompt_ids"], batch["prompt_mask"]))
            self._buffered_inputs = [unsplit_pixel_values_by_grid(part)
                                     for part in split_tensor_dict(batch, self.args.steps_per_generation)]
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    def _shared_prefix_unsupported(self, model, compute_aux_loss: bool, multimodal: dict) -> str | None:
        if compute_aux_loss:
            return "the MoE aux loss is asked for"
        if any(v is not None for v in multimodal.values()):
            return "multimodal inputs"
        config = self.accelerator.unwrap_model(model).config
        if config.get_text_config() is not config:
            return "a multimodal model"
        attention = getattr(config, "_attn_implementation", None)
        if attention not in ATTENTION_WITH_4D_MASK:
            return f"attention {attention!r} takes no custom 4D mask (sdpa and eager do)"
        layer_types = getattr(config, "layer_types", None)
        if (any(t != "full_attention" for t in layer_types) if layer_types
                else getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)):
            return "sliding-window attention (the custom mask would replace the window)"
        return None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **multimodal):
        mode = "train" if self.model.training else "eval"
        reason = self._shared_prefix_unsupported(model, compute_aux_loss, multimodal)
        # On a CPU a forward costs in proportion to the positions it computes, so a group packed beside a
        # longer one pays for the padding up to that length (9% of the positions of the CoNLL04 micro-batches
        # of two groups in docs/results.md): each group goes alone there. On an accelerator, where one wide
        # forward is what keeps the device busy, groups share a forward as before (not measured here).
        per_group = input_ids.device.type == "cpu"
        packs = (plan_packs(input_ids, attention_mask, logits_to_keep, batch_size, group_per_pack=per_group)
                 if reason is None else reason)
        if isinstance(packs, str):
            self._shared_prefix_say(f"TRL's computation for this call: {packs}")
            self._shared_prefix_count(mode, input_ids.numel(), input_ids.numel(), fallback=True)
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **multimodal)
        unwrapped = self.accelerator.unwrap_model(model)
        # eager adds the mask to its scores (a float mask in the embeddings' dtype, as transformers builds it)
        mask_dtype = (None if unwrapped.config._attn_implementation == "sdpa"
                      else unwrapped.get_input_embeddings().weight.dtype)
        logps, entropies, targets = [], [], []
        for pack in packs:
            with self.accelerator.autocast():
                out = model(input_ids=pack.input_ids, attention_mask=attention_mask_4d(pack.segments, mask_dtype),
                            position_ids=pack.position_ids, shift_labels=pack.shift_labels, fused_lm_head=True)
            logps.append(out.log_probs[pack.source])
            if compute_entropy:
                entropies.append(out.entropy[pack.source])
            targets.append(pack.target)
        self._shared_prefix_count(mode, sum(p.input_ids.numel() for p in packs), input_ids.numel(), fallback=False)
        where = (torch.cat([t[0] for t in targets]), torch.cat([t[1] for t in targets]))
        shape = (input_ids.size(0), logits_to_keep)

        def scatter(values: list[torch.Tensor]) -> torch.Tensor:  # out of place: differentiable
            flat = torch.cat(values)
            return flat.new_zeros(shape).index_put(where, flat)

        return scatter(logps), scatter(entropies) if compute_entropy else None, None

    def _shared_prefix_count(self, mode: str, tokens: int, plain_tokens: int, fallback: bool) -> None:
        totals = self.shared_prefix_totals
        totals["calls"] += 1
        totals["fallback_calls"] += int(fallback)
        totals["tokens"] += tokens
        totals["plain_tokens"] += plain_tokens
        metrics = self._metrics[mode]
        metrics["shared_prefix/tokens"].append(float(tokens))
        metrics["shared_prefix/plain_tokens"].append(float(plain_tokens))
        metrics["shared_prefix/fallback"].append(float(fallback))


def shared_prefix_trainer(base=None) -> type:
    """`base` (default: trl.GRPOTrainer) with the shared-prefix loss; refuses a trainer that rewrote
    the methods this relies on (unsloth's CUDA UnslothGRPOTrainer), where it would silently not apply."""
    if base is None:
        from trl import GRPOTrainer as base
    foreign = [name for name in OVERRIDDEN if getattr(getattr(base, name, None), "__module__", None) != TRL_MODULE]
    if foreign:
        raise TypeError(f"shared prefix needs TRL's own GRPOTrainer; {base.__module__}.{base.__qualname__} "
                        f"replaces {', '.join(foreign)} (unsloth's CUDA trainer computes its loss in its own "
                        "code): use the plain trainer there")
    return type(f"SharedPrefix{base.__name__}", (SharedPrefixMixin, base), {"__module__": __name__})
