"""The one safe reader for every weight file gligen-eval opens; no file can run code.

* ``.safetensors`` is read with safetensors (a header and raw tensors, nothing to execute).
* Pickles (``.bin/.pt/.pth/.ckpt``) go only through ``torch.load(weights_only=True)``, whose
  unpickler builds tensors and plain containers and calls nothing else, plus an explicit allow-list
  that depends on the kind of file:

  - GLIGEN checkpoints (:func:`read_checkpoint`): the pickled training config's classes from
    :data:`CONFIG_PLACEHOLDER_MODULES` become inert :class:`ConfigPlaceholder` objects;
  - ultralytics ``.pt`` (:func:`read_ultralytics_checkpoint`): ``torch.nn`` and ultralytics
    ``nn.Module`` classes, which the unpickler may *create* (``__new__`` + ``__setstate__``, the way
    ``torch.save`` writes modules) but never *call*: a call could run model-building code
    (ultralytics evaluates strings of a model definition), so it is refused;
  - plain state dicts (:func:`read_state_dict`, e.g. FID's Inception weights): nothing extra.

  Anything else makes the load fail with a one-line :class:`~gligen_eval.errors.InputError` that
  names the file and the refused global, before any of it is built.
* Third-party loaders that would unpickle a file again (ultralytics ``YOLO(path)``, torch-fidelity)
  are handed the object already read here: inside :func:`torch_load_returns` ``torch.load`` of that
  file returns it, and any other ``torch.load`` in that thread is refused.
* transformers and diffusers ``from_pretrained`` (CLIP, OWLv2, the generator's parts) read
  safetensors, or ``.bin`` through ``torch.load(weights_only=True)`` (their default, relied upon and
  tested in ``tests/test_safeload.py``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from gligen_eval.errors import InputError, MissingWeightsError

CONFIG_PLACEHOLDER_MODULES = ("omegaconf", "typing", "argparse", "pathlib")
"""Modules whose classes may appear in an official checkpoint's pickled config; they are rebuilt as
inert :class:`ConfigPlaceholder` objects (no code from the file or from these modules runs)."""

ULTRALYTICS_MODULE_PACKAGES = ("torch.nn.modules.", "ultralytics.nn.")
"""Packages whose ``nn.Module`` classes an ultralytics checkpoint may instantiate (never call)."""

ULTRALYTICS_PLAIN_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")
"""Modules whose classes (training losses, assigners) a training checkpoint may carry, same rule."""

ULTRALYTICS_HINT = ("use a checkpoint written by ultralytics (YOLO(...).save or its trainer) with the installed "
                    "ultralytics version")

_NUMPY_NAMES = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype")
_PATH_NAMES = {"pathlib.PosixPath": "PosixPath", "pathlib.PurePosixPath": "PurePosixPath",
               "pathlib.WindowsPath": "PosixPath", "pathlib._local.PosixPath": "PosixPath"}  # fmt: skip

Resolver = Callable[[str], Any]
"""Maps a global named in a pickle to the object allowed to stand for it, or ``None`` (refused)."""


# --------------------------------------------------------------------------------------------
# refusals


def _reason(error: BaseException) -> str:
    """The part of a ``weights_only`` unpickling error that says what was refused (no advice text)."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith(("Weights only load failed", "Check the documentation",
                                                             "Please file an issue"))  # fmt: skip
            and "weights_only" not in ln]  # fmt: skip
    return (keep[0] if keep else type(error).__name__)[:200]


def _refused_global(error: BaseException) -> str | None:
    msg = str(error)
    if "GLOBAL " in msg:
        return msg.split("GLOBAL ", 1)[1].split()[0]
    return None


RESAVE_HINT = "re-save the weights as safetensors (safetensors.torch.save_file) or as a plain dict of tensors"


def _refuse(path: Path, names: Iterable[str], hint: str = RESAVE_HINT, *, reason: str | None = None) -> InputError:
    shown = ", ".join(sorted(names)[:5]) if reason is None else f"the file ({reason})"
    return InputError(
        f"refusing to unpickle {shown}: loading it could run code from the file. Only tensors, plain "
        f"containers and an allow-list of classes are read; {hint}",
        path=str(path),
    )


def _unreadable(path: Path, error: BaseException, what: str = "PyTorch checkpoint") -> InputError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return InputError(f"not a readable {what} ({first}); the file may be truncated or corrupted", path=str(path))


# --------------------------------------------------------------------------------------------
# the restricted torch.load


def torch_load_restricted(path: str | Path, resolve: Resolver | None = None, *, hint: str = RESAVE_HINT) -> Any:
    """``torch.load(path, weights_only=True)`` with the globals ``resolve`` allows; anything else refused.

    The zip format is scanned for its globals before loading; the legacy format is loaded and each
    refused global is resolved in turn.
    """
    import pickle

    import torch

    p = Path(path)
    resolve = resolve or (lambda name: None)
    allowed: dict[str, Any] = {}

    def admit(name: str) -> bool:
        if name in allowed:
            return False
        obj = resolve(name)
        if obj is None:
            return False
        allowed[name] = obj
        return True

    is_zip = zipfile.is_zipfile(p)
    if is_zip:
        try:
            names = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(p)))
        except Exception as e:  # an unreadable archive
            raise _unreadable(p, e) from e
        for name in names:
            admit(name)
        bad = names - allowed.keys()
        if bad:
            raise _refuse(p, bad, hint)
    for _ in range(256):
        try:
            with torch.serialization.safe_globals([(obj, name) for name, obj in allowed.items()]):
                return torch.load(str(p), map_location="cpu", weights_only=True, mmap=is_zip)
        except pickle.UnpicklingError as e:
            name = _refused_global(e)
            if name is None:
                raise _refuse(p, [], hint, reason=_reason(e)) from None
            if not admit(name):
                raise _refuse(p, [name], hint) from None
        except (RuntimeError, EOFError, ValueError, OSError) as e:
            raise _unreadable(p, e) from None
    raise _refuse(p, sorted(allowed), hint)


# --------------------------------------------------------------------------------------------
# GLIGEN checkpoints and state dicts


class ConfigPlaceholder:
    """Stands in for a pickled config object (e.g. an OmegaConf node); keeps its pickled state only."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "ConfigPlaceholder":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ConfigPlaceholder(state={type(self.state).__name__})"


def _placeholder_allowed(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in CONFIG_PLACEHOLDER_MODULES)


def _torch_load_safe(path: Path) -> Any:
    """A GLIGEN checkpoint: tensors, containers, and config classes as :class:`ConfigPlaceholder`."""
    return torch_load_restricted(path, lambda name: ConfigPlaceholder if _placeholder_allowed(name) else None)


def read_safetensors(path: str | Path) -> dict[str, Any]:
    """``{name: tensor}`` of a ``.safetensors`` file; a truncated or foreign file is an :class:`InputError`."""
    from safetensors.torch import load_file

    p = Path(path)
    try:
        return dict(load_file(str(p)))
    except Exception as e:
        raise _unreadable(p, e, "safetensors file") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a weights file without executing pickled code.

    ``.safetensors`` → flat ``{name: tensor}``; ``.bin/.pth/.pt/.ckpt`` → whatever dict was saved,
    read with ``torch.load(weights_only=True)``. A directory is read as a diffusers UNet folder
    (``[unet/]diffusion_pytorch_model.safetensors`` or ``.bin``).
    """
    p = Path(path)
    if p.is_dir():
        for sub in ("unet", "."):
            for fname in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
                if (p / sub / fname).is_file():
                    return read_checkpoint(p / sub / fname)
        raise MissingWeightsError(f"{p}: no diffusion_pytorch_model.safetensors/.bin in the folder or its unet/")
    if not p.is_file():
        raise MissingWeightsError(f"{p}: checkpoint file not found")
    if p.suffix == ".safetensors":
        return read_safetensors(p)
    obj = _torch_load_safe(p)
    if not isinstance(obj, Mapping):
        raise InputError(f"expected a dict of weights, got {type(obj).__name__}", path=str(p))
    return dict(obj)


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """A plain ``{name: tensor}`` file (safetensors, or a pickle of tensors and containers only)."""
    p = Path(path)
    if not p.is_file():
        raise MissingWeightsError(f"{p}: weights file not found")
    obj = read_safetensors(p) if p.suffix == ".safetensors" else torch_load_restricted(p)
    if not isinstance(obj, Mapping):
        raise InputError(f"expected a dict of tensors, got {type(obj).__name__}", path=str(p))
    return dict(obj)


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` header of a safetensors file ({} when absent)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise _unreadable(Path(path), e, "safetensors file") from None


def safetensors_keys(path: str | Path) -> list[str]:
    """The tensor names in a safetensors header (the tensors are not read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as e:
        raise _unreadable(Path(path), e, "safetensors file") from None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def check_pickle(path: str | Path) -> None:
    """Refuse a weights pickle that holds anything beyond tensors and plain containers.

    The zip format is checked from its pickle alone (the tensors are not read); the legacy format
    is read once with the restricted unpickler.
    """
    import torch

    p = Path(path)
    if zipfile.is_zipfile(p):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
        except Exception as e:
            raise _unreadable(p, e) from None
        if names:
            raise _refuse(p, names)
    else:
        torch_load_restricted(p)


def check_model_folder(folder: str | Path) -> None:
    """Check every weights pickle in a transformers/diffusers model folder with :func:`check_pickle`.

    Those libraries read ``.bin`` files with ``weights_only=True`` themselves; this makes the
    guarantee ours, and the refusal a one-line error naming the file. A diffusers pipeline folder
    keeps its parts one level down (``unet/``, ``vae/``): those are checked too.
    """
    root = Path(folder)
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        for f in sorted(d.iterdir()):
            if f.is_file() and f.suffix in PICKLE_SUFFIXES:
                check_pickle(f)


def unpickling_refusal(path: str | Path, error: BaseException) -> InputError:
    """A one-line refusal for a ``weights_only`` error raised inside a third-party loader."""
    name = _refused_global(error)
    return _refuse(Path(path), [name] if name else [], reason=None if name else _reason(error))


# --------------------------------------------------------------------------------------------
# ultralytics checkpoints


class _Instantiable:
    """Marks the stand-in classes of :func:`_instantiable`."""

    __slots__ = ()


def _instantiable(real: type, name: str) -> type:
    """A subclass of ``real`` that the unpickler may create and fill, but whose call is refused."""
    import pickle

    def refuse_call(cls: type, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError(f"a call to {name}(...) (classes are only rebuilt, never called)")

    meta = type(f"_NoCall{type(real).__name__}", (type(real),), {"__call__": refuse_call})
    return meta(real.__name__, (real, _Instantiable), {"__slots__": (), "__module__": real.__module__,
                                                       "__qualname__": real.__qualname__, "_real": real})  # fmt: skip


def _ultralytics_resolver() -> Resolver:
    from torch import nn

    made: dict[str, Any] = {}

    def resolve(name: str) -> Any:
        if name in made:
            return made[name]
        module, _, attr = name.rpartition(".")
        obj: Any = None
        if module.startswith(ULTRALYTICS_MODULE_PACKAGES) or module in ULTRALYTICS_PLAIN_MODULES:
            try:
                cls = getattr(importlib.import_module(module), attr, None)
            except ImportError:
                cls = None
            if (isinstance(cls, type) and cls.__module__ == module and not attr.startswith("_")
                    and (issubclass(cls, nn.Module) or module in ULTRALYTICS_PLAIN_MODULES)):  # fmt: skip
                obj = _instantiable(cls, name)
        elif name in _NUMPY_NAMES:  # training metrics saved as numpy scalars
            import numpy as np

            obj = np.dtype if attr == "dtype" else getattr(importlib.import_module(module), attr, None)
        elif module == "numpy.dtypes" and attr.endswith("DType"):
            import numpy as np

            obj = getattr(np.dtypes, attr, None)
        elif name in _PATH_NAMES:  # paths in training arguments
            import pathlib

            obj = getattr(pathlib, _PATH_NAMES[name])
        made[name] = obj
        return obj

    return resolve


def _restore_classes(root: Any) -> None:
    """Give every object built from an :func:`_instantiable` stand-in its real class back."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(type(obj), type) and issubclass(type(obj), _Instantiable):
            obj.__class__ = type(obj)._real
        if isinstance(obj, Mapping):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        if hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(vars(obj).values())


def read_ultralytics_checkpoint(path: str | Path) -> dict[str, Any]:
    """An ultralytics ``.pt`` checkpoint, read with ``weights_only=True`` and the module allow-list.

    Returns the checkpoint dict (``model``/``ema`` hold the ``nn.Module``); anything else in the
    file, or a file without a model, is an :class:`InputError` naming it.
    """
    from torch import nn

    p = Path(path)
    ckpt = torch_load_restricted(p, _ultralytics_resolver(), hint=ULTRALYTICS_HINT)
    _restore_classes(ckpt)
    if not isinstance(ckpt, dict):
        raise InputError(f"not an ultralytics checkpoint (a pickled {type(ckpt).__name__}, expected a dict "
                         "written by YOLO.save / the ultralytics trainer)", path=str(p))  # fmt: skip
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, nn.Module):
        raise InputError("not an ultralytics checkpoint (no 'model' module in it)", path=str(p))
    return ckpt


def check_ultralytics_checkpoint(path: str | Path) -> None:
    """Refuse an ultralytics ``.pt`` that :func:`read_ultralytics_checkpoint` would refuse, without
    building it: the zip format is checked from its pickle's globals alone (no tensor is read), the
    legacy format is read once."""
    import torch

    p = Path(path)
    if not zipfile.is_zipfile(p):
        read_ultralytics_checkpoint(p)
        return
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
    except Exception as e:  # an unreadable archive
        raise _unreadable(p, e) from None
    resolve = _ultralytics_resolver()
    bad = [n for n in names if resolve(n) is None]
    if bad:
        raise _refuse(p, bad, ULTRALYTICS_HINT)


def _is_layer(obj: Any) -> bool:
    from torch import nn

    return isinstance(obj, type) and issubclass(obj, nn.Module)


def _literal_layer_call(text: str) -> bool:
    """``nn.SiLU()`` / ``torch.nn.LeakyReLU(0.1)``: a torch layer called with literal arguments only."""
    import ast

    from torch import nn

    try:
        call = ast.parse(text.strip(), mode="eval").body
        if not isinstance(call, ast.Call):
            return False
        parts, node = [], call.func
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return False
        dotted = ".".join([node.id, *reversed(parts)])
        if not dotted.startswith(("nn.", "torch.nn.")) or dotted.count(".") != (1 if dotted.startswith("nn.") else 2):
            return False
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(arg)
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return False
    return _is_layer(getattr(nn, dotted.rsplit(".", 1)[1], None))


def check_ultralytics_definition(definition: Mapping[str, Any], where: str) -> None:
    """Refuse an ultralytics model definition (``.yaml``) that building it would run as code.

    ultralytics evaluates the ``activation`` string and looks each layer's module name up among the
    globals of its model code, calling what it finds; only torch/ultralytics layers and an
    ``activation`` of the form ``nn.Layer(literal args)`` are accepted.
    """
    from ultralytics.nn import tasks

    act = definition.get("activation")
    if act is not None and not (isinstance(act, str) and _literal_layer_call(act)):
        raise InputError(f"refusing the activation {str(act)[:120]!r}: ultralytics would evaluate it as code; "
                         "use the form nn.SiLU() (a torch.nn layer with literal arguments)", path=where)  # fmt: skip
    for section in ("backbone", "head"):
        for i, layer in enumerate(definition.get(section) or []):
            name = layer[2] if isinstance(layer, (list, tuple)) and len(layer) == 4 else None
            if not isinstance(name, str):
                raise InputError(f"{section}[{i}] is not a [from, repeats, module, args] row", path=where)
            if name.startswith("nn."):
                from torch import nn

                obj = getattr(nn, name[3:], None)
            elif name.startswith("torchvision.ops."):
                import torchvision.ops

                obj = getattr(torchvision.ops, name[len("torchvision.ops."):], None)
            else:
                obj = getattr(tasks, name, None)  # where ultralytics looks the name up
            if not _is_layer(obj):
                raise InputError(f"refusing {section}[{i}] module {name[:120]!r}: not a torch/ultralytics layer, "
                                 "and ultralytics would call it while building the model", path=where)  # fmt: skip


# --------------------------------------------------------------------------------------------
# handing an object already read to a third-party loader


@contextlib.contextmanager
def torch_load_returns(path: str | Path, obj: Any) -> Iterator[list[str]]:
    """Inside the block, ``torch.load(path)`` in this thread returns ``obj`` (read safely before).

    Any other ``torch.load`` in this thread is refused, and ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` is set
    so that even a loader holding its own reference to ``torch.load`` cannot unpickle freely. The
    yielded list records the calls, so the caller can check the hand-over happened.
    """
    import torch
    import torch.serialization as ts

    target = Path(path).resolve()
    owner = threading.get_ident()
    original = torch.load
    calls: list[str] = []

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != owner:
            return original(f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)) and Path(f).resolve() == target:
            calls.append(str(f))
            return obj
        raise InputError(f"refusing to unpickle {f!r} while handing over this file", path=str(target))

    env = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    torch.load = ts.load = load
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield calls
    finally:
        torch.load = ts.load = original
        if env is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = env
