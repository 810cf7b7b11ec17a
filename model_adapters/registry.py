"""Finding adapters by name: built-ins, installed plug-ins, and `--adapter-file`.

A third party adds a model without touching the harness, either by declaring an entry point in
the `chexbench.adapters` group of their own package (`mymodel = "mypkg.adapter:MyAdapter"`)
or by pointing `--adapter-file my_adapter.py` at a file defining a `VisionLanguageAdapter`
subclass. Every adapter is also registered as an lm-eval model of the same name.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean
from model_adapters.base import VisionLanguageAdapter
from model_adapters.loading import parse_model_args
from model_adapters.native import NativeAdapter

# What an adapter class may derive from: the splice interface or the native one.
ADAPTER_BASES = (VisionLanguageAdapter, NativeAdapter)

ENTRY_POINT_GROUP = "chexbench.adapters"
ENGINE_ARGS = (
    "batch_size",
    "mc_mode",
    "max_gen_toks",
    "prefetch",
    "decode_workers",
    "bucket",
    "decode_executor",
)

BUILTIN: dict[str, str] = {
    "chexagent": "model_adapters.chexagent:CheXagentAdapter",
    "chexagent2": "model_adapters.chexagent2:CheXagent2Adapter",
    "blip2": "model_adapters.blip2:Blip2Adapter",
    "instructblip": "model_adapters.instructblip:InstructBlipAdapter",
    "llava_med": "model_adapters.llava_med:LlavaMedAdapter",  # v0, the paper's
    "llava_med_v15": "model_adapters.llava_med:LlavaMedV15Adapter",
    "xraygpt": "model_adapters.xraygpt:XrayGPTAdapter",
    "medflamingo": "model_adapters.medflamingo:MedFlamingoAdapter",
    "radfm": "model_adapters.radfm:RadFMAdapter",
    "hf": "model_adapters.hf_auto:HFAutoAdapter",  # any transformers VLM with a chat template
}
# Models served elsewhere, scored over HTTP: an lm-eval LM of their own, no in-process adapter.
REMOTE: dict[str, str] = {
    "openai": "model_adapters.openai_model:OpenAIServerLM",  # any OpenAI-compatible server
}

# name -> class, for every adapter imported so far (a cache; where it came from is below)
_LOADED: dict[str, type[VisionLanguageAdapter]] = {}
# name -> the --adapter-file that defined it
_FROM_FILES: dict[str, Path] = {}


class AdapterNotFound(UserError, LookupError):
    pass


@dataclass(frozen=True)
class AdapterSource:
    """Where an adapter name resolves to, as `chexbench adapters` lists it."""

    name: str
    kind: str  # "built-in" | "entry point" | "file"
    target: str  # module:Class, or the adapter file's path
    distribution: str = ""  # the installed package declaring an entry point
    note: str = ""


def _import_target(target: str) -> type[VisionLanguageAdapter]:
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (inspect.isclass(cls) and issubclass(cls, ADAPTER_BASES)):
        raise TypeError(f"{target} is not a VisionLanguageAdapter or NativeAdapter subclass")
    return cls


def load_adapter_file(path: str | Path) -> list[str]:
    """Import a user's adapter file and register every adapter class it defines."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--adapter-file {path}: no such file")
    mod_name = f"chexbench_user_adapter_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ADAPTER_BASES)
        and not inspect.isabstract(obj)
        and obj.__module__ == mod_name
    ]
    if not classes:
        raise UserError(
            f"--adapter-file {path}: defines no (non-abstract) "
            "VisionLanguageAdapter or NativeAdapter subclass"
        )
    for cls in classes:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise UserError(f"--adapter-file {path}: class {cls.__name__} has no `name`")
        if name in BUILTIN or name in REMOTE:
            # A results file saying "chexagent" must mean the built-in adapter.
            raise UserError(
                f"--adapter-file {path}: class {cls.__name__} is named {name!r}, "
                "which is a built-in adapter; choose another name"
            )
        _LOADED[name] = cls
        _FROM_FILES[name] = path.resolve()
        register_with_lm_eval(name)
    return [cls.name for cls in classes]


def _plugin_entry_points() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def list_adapters() -> list[AdapterSource]:
    """Every adapter name this process can build, and where each comes from.

    Precedence when names collide: built-in, then --adapter-file, then entry point (an
    installed package cannot silently replace a built-in the leaderboard reports under)."""
    out = {n: AdapterSource(n, "built-in", t) for n, t in {**BUILTIN, **REMOTE}.items()}
    for n, path in _FROM_FILES.items():
        out.setdefault(n, AdapterSource(n, "file", str(path)))
    for n, ep in _plugin_entry_points().items():
        dist = getattr(getattr(ep, "dist", None), "name", "") or ""
        if n in out:
            out[f"{n} ({dist or ep.value})"] = AdapterSource(
                n, "entry point", ep.value, dist, f"ignored: {n!r} is already {out[n].kind}"
            )
        else:
            out[n] = AdapterSource(n, "entry point", ep.value, dist)
    return list(out.values())


def available() -> dict[str, str]:
    """name -> where it comes from (built-in target, plug-in target, or `file:PATH`)."""
    return {
        s.name: s.target if s.kind != "file" else f"file:{s.target}"
        for s in list_adapters()
        if not s.note
    }


def get_adapter_class(name: str) -> type[VisionLanguageAdapter]:
    if name in _LOADED:
        return _LOADED[name]
    if name in REMOTE:
        raise UserError(
            f"{name!r} is a model served by a server and scored over HTTP "
            "(docs/serving.md), not an adapter loaded in this process"
        )
    source = next((s for s in list_adapters() if s.name == name and not s.note), None)
    if source is None:
        from model_adapters.presets import PRESETS

        hint = did_you_mean(
            "model adapter or preset",
            name,
            [*available(), *PRESETS],
            f". Add one with --adapter-file FILE or an entry point in the "
            f"{ENTRY_POINT_GROUP!r} group (see docs/adapters/README.md)",
        )
        raise AdapterNotFound(str(hint))
    cls = _import_target(source.target)
    if "add_bos" in vars(cls) or any("add_bos" in vars(base) for base in cls.__mro__[1:-1]):
        # Removed engine default: a plugin relying on it would silently change layout.
        raise AdapterNotFound(
            f"adapter {name!r} sets add_bos, which the engine no longer reads: put "
            "*self.bos() in prompt_segments exactly where the model's own code puts BOS "
            "(docs/adapters/README.md)"
        )
    _LOADED[name] = cls
    return cls


def build_lm(name: str, model_args: dict[str, Any], **engine_kwargs: Any):
    """An lm-eval LM serving adapter `name` built with `model_args`."""
    from model_adapters.engine import CheXbenchLM

    model_args = dict(model_args)
    for key in ENGINE_ARGS:
        if key in model_args:
            engine_kwargs.setdefault(key, model_args.pop(key))
    if name in REMOTE:  # its own LM: engine settings and model args go to it together
        module_name, _, attr = REMOTE[name].partition(":")
        return getattr(importlib.import_module(module_name), attr).from_model_args(
            model_args, **engine_kwargs
        )
    adapter = get_adapter_class(name)(**model_args)
    return CheXbenchLM(adapter, **engine_kwargs)


def build_lm_from_args(name: str, model_args: str | dict[str, Any], additional: dict[str, Any]):
    """lm-eval's `create_from_arg_string`/`_obj` paths (used by `chexbench lm-eval`)."""
    args = parse_model_args(model_args) if isinstance(model_args, str) else dict(model_args)
    engine: dict[str, Any] = {}
    if additional.get("batch_size") not in (None, "auto"):
        engine["batch_size"] = int(str(additional["batch_size"]).split(":")[0])
    # lm-eval's --device defaults to "cuda" even on CPU-only machines, so the adapter's own
    # device=auto decides unless the user names a device in --model_args.
    return build_lm(name, args, **engine)


def register_with_lm_eval(name: str) -> None:
    """Expose adapter `name` as an lm-eval model (`--model name`)."""
    import lm_eval.models  # noqa: F401  (lm-eval's own names first: ours never take them)
    from lm_eval.api.registry import MODEL_REGISTRY, register_model

    from model_adapters.engine import CheXbenchLM

    if name in MODEL_REGISTRY:
        return
    if name in REMOTE:
        module_name, _, attr = REMOTE[name].partition(":")
        register_model(name)(getattr(importlib.import_module(module_name), attr))
        return
    cls = type(f"CheXbenchLM_{name}", (CheXbenchLM,), {"adapter_name": name})
    register_model(name)(cls)


def register_all_with_lm_eval() -> None:
    for name in available():
        register_with_lm_eval(name)
