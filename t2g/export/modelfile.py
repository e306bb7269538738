"""An Ollama Modelfile and a model card derived from the trained tokenizer itself.

Ollama runs a GGUF with a Go template, not the Jinja chat template the model was trained with; a
mismatch (or a missing stop token) is what makes exported models babble or never stop. So instead of
a table of model names, the chat format is *measured*: the tokenizer's own Jinja template is
rendered for probe conversations, the text around each probe gives every role's prefix and suffix,
the default system block and the generation prompt, and those pieces are written into a Go template.
Before anything is written, the Go template is rendered (`t2g.export.modelfile_template`) for sample conversations
and must equal `apply_chat_template` exactly; a template this scheme cannot express (one that
rewrites contents, say) is refused with `ModelfileError`, never exported approximately.
Works for the families we train: ChatML (Qwen2/2.5, SmolLM2) and Llama-3 style headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from t2g.export import modelfile_template
from t2g.task.prompts import PROMPT_VERSION, SYSTEM_PROMPT, build_messages

ROLES = ("system", "user", "assistant")
_PROBE = {"system": "T2GPROBESYS0", "user": "T2GPROBEUSR1", "assistant": "T2GPROBEAST1", "user2": "T2GPROBEUSR2"}

# Greedy decoding, as evaluation and the parity check decode; Ollama's defaults (temperature 0.8,
# repeat_penalty 1.1) would change the extracted graph.
GREEDY_PARAMETERS = {"temperature": 0, "top_k": 1, "top_p": 1, "repeat_penalty": 1, "seed": 0}


class ModelfileError(ValueError):
    """The chat template cannot be expressed faithfully as an Ollama template."""


@dataclass(frozen=True)
class ChatFormat:
    bos: str  # text the template puts before everything (usually the BOS token, or "")
    default_system: str  # block inserted when the first message is not a system message
    prefix: dict[str, str]
    suffix: dict[str, str]
    generation_prompt: str


def _render(tokenizer, messages: Sequence[dict[str, str]], generation: bool, continue_final: bool = False) -> str:
    try:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation,
                                             continue_final_message=continue_final)
    except Exception as exc:  # jinja raise_exception(...) in templates that refuse some role orders
        roles = [m["role"] for m in messages]
        raise ModelfileError(f"the chat template refuses a conversation with roles {roles}: {exc}") from exc


def _cut(text: str, start: str, what: str) -> str:
    if not text.startswith(start):
        raise ModelfileError(f"chat template: {what} does not begin with {start!r} (got {text!r})")
    return text[len(start):]


def _segments(text: str, probes: Sequence[str]) -> list[str]:
    """The text before, between and after the probes, which must appear once each, in order."""
    out, pos = [], 0
    for probe in probes:
        at = text.find(probe, pos)
        if at < 0 or text.count(probe) != 1:
            raise ModelfileError(f"chat template does not copy message contents verbatim ({probe} not found once)")
        out.append(text[pos:at])
        pos = at + len(probe)
    out.append(text[pos:])
    return out


def derive_chat_format(tokenizer) -> ChatFormat:
    """Measure the chat format by rendering the tokenizer's own template for probe conversations."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelfileError("the tokenizer has no chat_template; a Modelfile needs the format the model was trained with")
    S, U, A, U2 = _PROBE["system"], _PROBE["user"], _PROBE["assistant"], _PROBE["user2"]
    conv = [{"role": "system", "content": S}, {"role": "user", "content": U},
            {"role": "assistant", "content": A}, {"role": "user", "content": U2}]
    full = _render(tokenizer, conv, generation=False)
    head, mid1, mid2, mid3, tail = _segments(full, [S, U, A, U2])
    generation_prompt = _cut(_render(tokenizer, conv, generation=True), full, "the generation prompt")
    suffix_user = tail
    suffix_asst = _segments(_render(tokenizer, conv[:3], generation=False), [S, U, A])[-1]
    prefix_asst = _cut(mid2, suffix_user, "the assistant turn")
    prefix_user = _cut(mid3, suffix_asst, "the second user turn")
    if not mid1.endswith(prefix_user):
        raise ModelfileError(f"chat template: the first user turn does not begin with {prefix_user!r}")
    suffix_sys = mid1[: len(mid1) - len(prefix_user)]
    # Only a template that writes `bos_token` itself has a BOS text to separate from the system prefix.
    bos = tokenizer.bos_token or ""
    bos = bos if bos and "bos_token" in tokenizer.chat_template and head.startswith(bos) else ""
    head_user = _segments(_render(tokenizer, [conv[1]], generation=False), [U])[0]
    head_user = _cut(head_user, bos, "a conversation without a system message")
    if not head_user.endswith(prefix_user):
        raise ModelfileError("chat template: a conversation without a system message does not end its head with the user prefix")
    return ChatFormat(
        bos=bos,
        default_system=head_user[: len(head_user) - len(prefix_user)],
        prefix={"system": head[len(bos):], "user": prefix_user, "assistant": prefix_asst},
        suffix={"system": suffix_sys, "user": suffix_user, "assistant": suffix_asst},
        generation_prompt=generation_prompt,
    )


def go_template(fmt: ChatFormat) -> str:
    """Ollama's convention: the generation prompt follows a final non-assistant message; a final
    assistant message is left open (no suffix) so that the model continues it."""
    def literal(text: str) -> str:
        if "{{" in text or "}}" in text or '"""' in text:
            raise ModelfileError(f"chat template literal {text!r} cannot be written into a Modelfile TEMPLATE")
        return text

    parts = ['{{ range $i, $m := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}',
             f'{{{{ if eq $i 0 }}}}{literal(fmt.bos)}{{{{ if ne $m.Role "system" }}}}{literal(fmt.default_system)}{{{{ end }}}}{{{{ end }}}}']
    for n, role in enumerate(ROLES):
        keyword = "if" if n == 0 else "else if"
        suffix = literal(fmt.suffix[role])
        if role == "assistant":
            suffix = f"{{{{ if not $last }}}}{suffix}{{{{ end }}}}"
        parts.append(f'{{{{ {keyword} eq $m.Role "{role}" }}}}{literal(fmt.prefix[role])}{{{{ $m.Content }}}}{suffix}')
    parts.append("{{ end }}")
    parts.append(f'{{{{ if and $last (ne $m.Role "assistant") }}}}{literal(fmt.generation_prompt)}{{{{ end }}}}{{{{ end }}}}')
    return "".join(parts)


def sample_conversations() -> list[list[dict[str, str]]]:
    """Conversations the Go template must render exactly like the Jinja template (and tests use)."""
    request = build_messages("Tim Cook leads Apple in Cupertino.", ["person", "organization"], ["works for"])
    answer = '{"entities": [], "relations": []}'
    return [
        request,
        request[1:],  # no system message: the model's default system block, if any
        [*request, {"role": "assistant", "content": answer}, {"role": "user", "content": "Again, with\nnewlines: é ✓"}],
        [*request, {"role": "assistant", "content": '{"entities": ['}],  # open final assistant turn
    ]


def check_template(tokenizer, template: str, conversations: Sequence[Sequence[dict[str, str]]] | None = None) -> None:
    """Raise ModelfileError unless the Go template renders each conversation exactly as HF does."""
    for conv in conversations or sample_conversations():
        ends_with_assistant = conv[-1]["role"] == "assistant"
        expected = _render(tokenizer, conv, generation=not ends_with_assistant, continue_final=ends_with_assistant)
        got = modelfile_template.render(template, conv)
        if got != expected:
            raise ModelfileError(
                f"the Ollama template does not reproduce the chat template for roles "
                f"{[m['role'] for m in conv]}:\nexpected {expected!r}\ngot      {got!r}"
            )


def _special_texts(tokenizer) -> set[str]:
    return set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())


def stop_tokens(tokenizer, fmt: ChatFormat, eos_token_ids: Sequence[int] = ()) -> list[str]:
    """The end-of-turn marker the template writes after an assistant turn, then every EOS the model has."""
    candidates = [fmt.suffix["assistant"].strip(), tokenizer.eos_token or ""]
    candidates += [tokenizer.convert_ids_to_tokens(int(i)) for i in eos_token_ids]
    special = _special_texts(tokenizer)
    stops: list[str] = []
    for text in candidates:
        if text and text not in stops and (text in special or text == candidates[0]):
            stops.append(text)
    if not stops:
        raise ModelfileError("no stop token: the chat template ends assistant turns with nothing and the tokenizer has no EOS")
    return stops


def _quote(value: str) -> str:
    if '"""' in value:
        raise ModelfileError('a Modelfile value cannot contain """')
    return f'"""{value}"""'


def render_modelfile(gguf_name: str, template: str, stops: Sequence[str], system: str = SYSTEM_PROMPT,
                     num_ctx: int | None = None, num_predict: int = 1024) -> str:
    lines = [
        f"# t2g text-to-graph extractor ({PROMPT_VERSION}). Build: ollama create <name> -f Modelfile",
        f"FROM ./{gguf_name}",
        f"TEMPLATE {_quote(template)}",
        f"SYSTEM {_quote(system)}",
    ]
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    params: dict[str, Any] = {**GREEDY_PARAMETERS, "num_predict": num_predict}
    if num_ctx:
        params["num_ctx"] = num_ctx
    lines += [f"PARAMETER {k} {v}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def build_modelfile(tokenizer, gguf_name: str, eos_token_ids: Sequence[int] = (), num_ctx: int | None = None) -> str:
    """Derive, verify and render the Modelfile for `tokenizer` (raises ModelfileError when unfaithful)."""
    fmt = derive_chat_format(tokenizer)
    template = go_template(fmt)
    check_template(tokenizer, template)
    return render_modelfile(gguf_name, template, stop_tokens(tokenizer, fmt, eos_token_ids), num_ctx=num_ctx)
