"""A PEFT LoRA adapter -> a llama.cpp LoRA adapter GGUF, for a base GGUF converted from the same HF weights.

llama.cpp applies an adapter GGUF on top of a loaded base model (`llama_adapter_lora_init`), so a LoRA
that changes every optimizer step reaches llama.cpp as a ~20 MB file instead of a merged 0.5 GB model.
What the file must hold (llama.cpp's `llama_adapter_lora_init_impl`, `convert_lora_to_gguf.py`):

- `general.type = adapter`, `general.architecture` = the base's, `adapter.type = lora`,
  `adapter.lora.alpha`; llama.cpp scales by alpha / rank with rank = lora_b's columns, as PEFT does.
- `<base tensor>.lora_a` = PEFT's lora_A (r, in) and `.lora_b` = lora_B (out, r), in numpy order, named
  by gguf's tensor name map; the base tensor must exist in the base GGUF.
- For llama-style RoPE (SmolLM2, Llama) the converter permutes the rows of q_proj / k_proj; lora_B's
  rows (the same output rows) must be permuted alike. `BaseLayout.read` finds out from the files
  themselves (the base GGUF's attn_q against the HF q_proj), not from a list of architectures.

Anything an adapter GGUF cannot express is refused with the module's name: fully trained modules
(modules_to_save such as lm_head / embed_tokens), DoRA, rsLoRA, trained biases, embedding LoRA,
initialisations that rewrite the base weights (PiSSA, OLoRA, ...), modules the base has no tensor for.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from t2g.export.gguf import atomic_target, convert_hf_to_gguf
from t2g.models.dtype import GGUF_FLOAT_TYPES

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<kind>lora_A|lora_B)(?:\.(?P<adapter>[^.]+))?\.weight$")
_QK = ("attn_q", "attn_k")  # the GGUF tensors whose rows llama-style converters permute
# PEFT initialisations that change the base weights themselves (W - BA): the adapter alone on the
# original base is a different model.
_BASE_CHANGING_INIT = ("pissa", "olora", "corda", "loftq", "lora_ga")


class LoraGGUFError(ValueError):
    """The adapter cannot become a llama.cpp adapter GGUF; the message names the module and why."""


@dataclass(frozen=True)
class BaseLayout:
    """What an adapter GGUF must match in its base GGUF."""

    arch: str  # general.architecture
    n_layers: int
    shapes: dict[str, tuple[int, ...]]  # GGUF tensor name -> numpy shape ((out, in) for a matrix)
    permuted: dict[str, int] = field(default_factory=dict)  # "attn_q"/"attn_k" -> heads of its row permutation

    @classmethod
    def read(cls, base_gguf: str | Path, hf_dir: str | Path | None = None) -> "BaseLayout":
        """The base GGUF's architecture and tensors; with `hf_dir` (the HF folder it was converted from),
        whether its q/k rows are RoPE-permuted. Without it, llama-architecture GGUFs count as permuted
        (what llama.cpp's converter does for LlamaForCausalLM) and others as not."""
        import gguf

        reader = gguf.GGUFReader(str(base_gguf))
        arch = _field(reader, "general.architecture")
        shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}
        n_layers = int(_field(reader, f"{arch}.block_count"))
        heads = {"attn_q": int(_field(reader, f"{arch}.attention.head_count")),
                 "attn_k": int(_field(reader, f"{arch}.attention.head_count_kv", _field(reader, f"{arch}.attention.head_count")))}
        permuted: dict[str, int] = {}
        for kind, n_head in heads.items():
            name = f"blk.0.{kind}.weight"
            if name not in shapes:
                continue
            if hf_dir is None:
                if arch == "llama":
                    permuted[kind] = n_head
                continue
            hf = _hf_tensor(Path(hf_dir), name, arch, n_layers)
            if hf is None:
                continue
            ours = _dequantized(reader, name)
            if ours.shape != hf.shape:
                raise LoraGGUFError(f"{base_gguf}: its {name} is {ours.shape}, the HF folder's {hf.shape}: was it "
                                    f"converted from {hf_dir}?")
            err_plain = float(np.abs(ours - hf).max())
            err_perm = float(np.abs(ours - permute_rows(hf, n_head)).max())
            scale = float(np.abs(hf).max()) or 1.0
            if min(err_plain, err_perm) > 0.02 * scale:
                raise LoraGGUFError(f"{base_gguf}: its {name} is neither the HF folder's tensor nor its RoPE row "
                                    f"permutation (max differences {err_plain:.3g}, {err_perm:.3g}): was it converted "
                                    f"from {hf_dir}?")
            if err_perm < err_plain:
                permuted[kind] = n_head
        return cls(arch, n_layers, shapes, permuted)


BASE_TYPES = tuple(GGUF_FLOAT_TYPES.values())  # the types a trainer's base weights can be held in exactly


def base_gguf(hf_dir: str | Path, folder: str | Path, llama_cpp: Any = None, gguf_type: str = "f32") -> Path:
    """The HF folder as a GGUF of `gguf_type` in `folder`, for adapters to apply to: converted once per
    type and content of the HF folder (its path and each file's name, size and mtime), so a changed base
    is converted again rather than used stale. Give the dtype the trainer holds the base weights in
    (f32 for an fp32 model, bf16 for a bf16 one): the adapter's products then add to the trainer's own
    weights, not to a rounding of them."""
    if gguf_type not in BASE_TYPES:
        raise LoraGGUFError(f"a base GGUF of type {gguf_type!r}: adapters apply to {', '.join(BASE_TYPES)} bases here")
    hf_dir = Path(hf_dir)
    h = hashlib.sha256(str(hf_dir.resolve()).encode())
    for p in sorted(hf_dir.iterdir()):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    path = Path(folder) / f"base-{h.hexdigest()[:16]}.{gguf_type}.gguf"
    if not path.is_file():
        if llama_cpp is None:
            from t2g.export.llama_cpp import find_llama_cpp

            llama_cpp = find_llama_cpp()
        convert_hf_to_gguf(hf_dir, path, gguf_type, llama_cpp)  # written beside and renamed: never half a file
    return path


def _field(reader: Any, key: str, default: Any = None) -> Any:
    fld = reader.fields.get(key)
    if fld is None:
        if default is None:
            raise LoraGGUFError(f"the base GGUF has no {key}: not a model GGUF llama.cpp's converter wrote")
        return default
    value = fld.parts[fld.data[0]]
    return bytes(value).decode("utf-8") if value.dtype == np.uint8 else value[0]


def _dequantized(reader: Any, name: str) -> np.ndarray:
    from gguf.quants import dequantize

    tensor = next(t for t in reader.tensors if t.name == name)
    shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(shape)


def _hf_tensor(hf_dir: Path, gguf_name: str, arch: str, n_layers: int) -> np.ndarray | None:
    """The HF weight that gguf's name map sends to `gguf_name`, read from the folder's safetensors."""
    from safetensors import safe_open

    names = _name_map(arch, n_layers)
    index = hf_dir / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
             else [p.name for p in sorted(hf_dir.glob("*.safetensors"))])
    for file in files:
        with safe_open(str(hf_dir / file), framework="pt") as f:
            for key in f.keys():
                if names.get_name(key, try_suffixes=(".weight",)) == gguf_name:
                    return f.get_tensor(key).float().numpy()
    return None


def _name_map(arch: str, n_layers: int) -> Any:
    import gguf

    by_name = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in by_name:
        raise LoraGGUFError(f"gguf {gguf.__name__} does not know the architecture {arch!r} of the base GGUF")
    return gguf.get_tensor_name_map(by_name[arch], n_layers)


def permute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """The row permutation llama.cpp's converter applies to q_proj / k_proj (`LlamaModel.permute`): each
    head's rotate-half pairs become adjacent (llama.cpp's RoPE rotates neighbouring elements)."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def check_config(config: Any) -> None:
    """Refuse the LoRA settings a llama.cpp adapter cannot reproduce, naming them."""
    get = config.get if isinstance(config, Mapping) else (lambda key, default=None: getattr(config, key, default))
    peft_type = getattr(get("peft_type"), "value", get("peft_type"))
    if peft_type not in (None, "LORA"):
        raise LoraGGUFError(f"a {peft_type} adapter is not a LoRA: llama.cpp adapters are LoRA only")
    problems = []
    if get("modules_to_save"):
        problems.append(f"modules_to_save {sorted(get('modules_to_save'))} are trained in full, which a LoRA adapter "
                        "cannot carry (drop embed_tokens / lm_head from the LoRA targets)")
    if get("use_dora"):
        problems.append("use_dora: DoRA's magnitude vectors have no place in a llama.cpp adapter")
    if get("use_rslora"):
        problems.append("use_rslora: llama.cpp scales by lora_alpha / r, rsLoRA by lora_alpha / sqrt(r)")
    if get("bias", "none") != "none" or get("lora_bias"):
        problems.append(f"bias={get('bias')!r} / lora_bias={get('lora_bias')!r}: trained biases are not LoRA matrices")
    if get("fan_in_fan_out"):
        problems.append("fan_in_fan_out: Conv1D-style (transposed) weights")
    if get("alpha_pattern"):
        problems.append(f"alpha_pattern {get('alpha_pattern')}: llama.cpp takes one lora_alpha for every module")
    for key in ("trainable_token_indices", "layer_replication", "target_parameters", "alora_invocation_tokens", "use_qalora"):
        if get(key):
            problems.append(f"{key}={get(key)!r} is not a plain LoRA")
    init = str(get("init_lora_weights", True)).lower()
    if init.startswith(_BASE_CHANGING_INIT):
        problems.append(f"init_lora_weights={get('init_lora_weights')!r} changes the base weights, which the base GGUF does not have")
    if problems:
        raise LoraGGUFError("this LoRA cannot become a llama.cpp adapter: " + "; ".join(problems))


def lora_tensors(state_dict: Mapping[str, Any], config: Any, layout: BaseLayout) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(GGUF base tensor name, lora_a, lora_b) for every LoRA module, checked against the base and with
    q/k's lora_b rows permuted as the base's q/k rows are; f32."""
    check_config(config)
    names = _name_map(layout.arch, layout.n_layers)
    pairs: dict[str, dict[str, Any]] = {}
    others = []
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if match is None:
            others.append(key)
        else:
            pairs.setdefault(match["module"], {})[match["kind"]] = value
    out = []
    for module, mats in sorted(pairs.items()):
        if set(mats) != {"lora_A", "lora_B"}:
            raise LoraGGUFError(f"{module}: has {sorted(mats)} but a LoRA needs both lora_A and lora_B")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or target not in layout.shapes:
            raise LoraGGUFError(f"{module}: llama.cpp's {layout.arch} model has no tensor for this module "
                                f"({target or 'no GGUF name'}); it cannot carry a LoRA on it")
        a, b = (_as_f32(mats[k], f"{module}.{k}") for k in ("lora_A", "lora_B"))
        out_dim, in_dim = layout.shapes[target]
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != in_dim or b.shape[0] != out_dim or a.shape[0] != b.shape[1]:
            raise LoraGGUFError(f"{module}: lora_A {a.shape} / lora_B {b.shape} do not fit the base's {target} "
                                f"{(out_dim, in_dim)}: was the adapter trained on this base?")
        kind = target.split(".")[2] if target.startswith("blk.") else ""
        if kind in layout.permuted:
            b = np.ascontiguousarray(permute_rows(b, layout.permuted[kind]))
        out.append((target, np.ascontiguousarray(a), b))
    if others:  # after the modules, whose message is the more telling one when both apply
        raise LoraGGUFError(f"{others[0]}: not a LoRA A/B matrix; a llama.cpp adapter holds only those (embedding "
                            "LoRA, DoRA vectors, biases and fully trained or saved base weights cannot go in)")
    if not out:
        raise LoraGGUFError("the adapter holds no LoRA matrices")
    return out


def _as_f32(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (any float dtype, any device)
        if not value.is_floating_point():
            raise LoraGGUFError(f"{what}: dtype {value.dtype} is not a float; llama.cpp adapters hold f32/f16/bf16")
        return value.detach().to("cpu").float().numpy()
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise LoraGGUFError(f"{what}: dtype {array.dtype} is not a float; llama.cpp adapters hold f32/f16/bf16")
    return array.astype(np.float32)


def write_lora_gguf(state_dict: Mapping[str, Any], config: Any, out_path: str | Path, layout: BaseLayout) -> Path:
    """Write the adapter GGUF (f32) atomically: a reader never sees a half-written file at out_path.

    `state_dict` is PEFT's (`get_peft_model_state_dict`, or an adapter folder's weights), `config` its
    LoraConfig or adapter_config.json dict."""
    import gguf

    tensors = lora_tensors(state_dict, config, layout)
    alpha = config["lora_alpha"] if isinstance(config, Mapping) else config.lora_alpha
    out_path = Path(out_path)
    with atomic_target(out_path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch=layout.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        for name, a, b in tensors:
            writer.add_tensor(name + ".lora_a", a)
            writer.add_tensor(name + ".lora_b", b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_path


def read_adapter_folder(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, adapter_config.json) of a saved PEFT adapter folder."""
    path = Path(path)
    config_path = path / "adapter_config.json"
    if not config_path.is_file():
        raise LoraGGUFError(f"{path}: no adapter_config.json (not a PEFT adapter folder)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if (path / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(path / "adapter_model.safetensors")), config
    if (path / "adapter_model.bin").is_file():
        import torch

        return torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True), config
    raise LoraGGUFError(f"{path}: no adapter_model.safetensors or adapter_model.bin")
