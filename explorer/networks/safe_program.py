"""Exported programs (`.pt2`, `torch.export.save`) read without running anything the archive carries.

`torch.export.load` trusts its file: it unpickles weights and constants marked `use_pickle` (with
`weights_only=False`), opaque objects (`pickle.loads`) and, when `weights_only` fails, the sample
inputs; loads compiled AOTInductor libraries; resolves an operator by walking `torch.` attributes
(`torch.os.system` is `os.system`); evaluates shape expressions with sympy (Python's `eval`); and
`ExportedProgram.module()` pastes the archive's argument and attribute names into generated Python
source. A `.pt2` can come from anyone (a link, a shared cut folder), so this module reads one in two
steps:

1. `check_archive` inspects the zip and its JSON without loading anything: only the entries an
   exported program needs (no AOTInductor library, no legacy pickle, no custom or opaque object, no
   entry marked `use_pickle`), operators only from torch's operator namespaces and Python's
   arithmetic, shape expressions only of sympy's arithmetic over symbols, and every name that
   becomes code an identifier (or a dotted path of identifiers and digits).
2. `load_program` builds the `ExportedProgram` from the checked parts with torch's own deserializer,
   the weights and constants from raw tensor bytes and the sample inputs with `weights_only=True`,
   on a route that has no fallback to `weights_only=False`.

Anything else is refused with `UnsafeProgramError` (a ValueError: one sentence, exit 2), and nothing
of the archive has run. Exported cuts (output/cut_files.py) pass the same check (tests/networks/
test_safe_program.py).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

MODEL = "model"  # torch.export.save writes one program under this name
_FIXED = {"archive_format", "archive_version", "version", ".data/version", ".data/serialization_id", "byteorder",
          f"models/{MODEL}.json", f"data/weights/{MODEL}_weights_config.json",
          f"data/constants/{MODEL}_constants_config.json", f"data/sample_inputs/{MODEL}.pt"}  # fmt: skip
_PAYLOAD = re.compile(r"data/(weights/weight|constants/tensor)_\d+")
_OPERATORS = [
    re.compile(p)
    for p in (
        r"torch\.ops\.(aten|prims|quantized_decomposed)\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+",
        r"_operator\.(getitem|add|sub|mul|truediv|floordiv|mod|pow|neg|pos|abs|eq|ne|lt|le|gt|ge|and_|or_|xor|not_|"
        r"invert|lshift|rshift|matmul)",
        r"math\.(ceil|floor|trunc|sqrt|exp|log|log2|pow|isfinite|isinf|isnan)",
        r"torch\.(sym_float|sym_int|sym_max|sym_min|sym_not|sym_sqrt|sym_ite|sym_sum|_check|_check_is_size|_assert|"
        r"_assert_async|_sym_sqrt)",
    )
]
_SYMPY_NAMES = {"Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Abs", "Mod", "FloorDiv",
                "CeilDiv", "CleanDiv", "PythonMod", "CeilToInt", "FloorToInt", "TruncToInt", "RoundToInt", "IntTrueDiv",
                "FloatTrueDiv", "ToFloat", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False",
                "oo", "zoo", "nan", "sqrt", "positive", "negative", "integer", "real", "nonnegative", "finite",
                "Identity", "Where"}  # fmt: skip
_SYMPY_TOKEN = re.compile(
    r"\s+|[A-Za-z_][A-Za-z0-9_]*|'[A-Za-z_][A-Za-z0-9_]*'|\d+(\.\d+)?(e[+-]?\d+)?|\*\*|[-+*/%(),=<>!]"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(r"([A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*)?")  # an attribute path: identifiers and digits, dotted
_NAME_KEYS = {"name", "parameter_name", "buffer_name", "tensor_constant_name", "fqn", "arg_name", "target_name"}


class UnsafeProgramError(ValueError):
    """A `.pt2` refused before anything in it ran; the message says why, in one sentence."""


def _refuse(path: Path, why: str) -> UnsafeProgramError:
    return UnsafeProgramError(
        f"{path.name} was refused: {why}; an exported program that could run code is never loaded (docs/security.md)"
    )


def check_archive(path: str | Path) -> None:
    """Inspect a `.pt2` without loading any of it.

    Raises:
        UnsafeProgramError: an entry or a string that could run code, or not an exported program.
    """
    _checked(Path(path))


def _checked(path: Path) -> tuple[str, Any, bytes]:
    """(the archive's folder prefix, its program's JSON, its sample inputs' bytes), each read once,
    after the check (torch writes every entry under one folder)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist()]
            prefix = _prefix(path, names)
            for name in names:
                rel = name[len(prefix) :]
                if rel not in _FIXED and not _PAYLOAD.fullmatch(rel):
                    raise _refuse(
                        path,
                        f"it holds {rel!r}, which an exported program saved without compiled code, "
                        "pickles or custom objects does not",
                    )
            for rel in (
                f"models/{MODEL}.json",
                f"data/weights/{MODEL}_weights_config.json",
                f"data/constants/{MODEL}_constants_config.json",
                f"data/sample_inputs/{MODEL}.pt",
            ):
                if prefix + rel not in names:
                    raise _refuse(path, f"it has no {rel}")
            for rel in (f"data/weights/{MODEL}_weights_config.json", f"data/constants/{MODEL}_constants_config.json"):
                _check_payload_config(path, _json(path, zf, prefix + rel))
            program = _json(path, zf, prefix + f"models/{MODEL}.json")
            _check_program(path, program)
            sample_bytes = zf.read(prefix + f"data/sample_inputs/{MODEL}.pt")
    except zipfile.BadZipFile as exc:
        raise UnsafeProgramError(f"{path.name} is not a program saved by torch.export.save ({exc})") from None
    return prefix, program, sample_bytes


def _prefix(path: Path, names: list[str]) -> str:
    formats = [n for n in names if n == "archive_format" or n.endswith("/archive_format")]
    if len(formats) != 1:
        raise UnsafeProgramError(f"{path.name} is not a program saved by torch.export.save (no single archive_format)")
    prefix = formats[0][: -len("archive_format")]
    if any(not n.startswith(prefix) for n in names) or prefix.count("/") > 1:
        raise _refuse(path, "its entries are not all in one folder")
    return prefix


def _json(path: Path, zf: zipfile.ZipFile, name: str) -> Any:
    info = zf.getinfo(name)
    if info.file_size > 512 * 1024**2:
        raise _refuse(path, f"{name} declares {info.file_size:,} bytes")
    try:
        return json.loads(zf.read(name))
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UnsafeProgramError(f"{path.name} is not a program saved by torch.export.save ({name}: {exc})") from None


def _check_payload_config(path: Path, config: Any) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise _refuse(path, "a payload config is not a mapping")
    for fqn, meta in entries.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise _refuse(path, f"its entry {str(fqn)[:80]!r} is pickled (use_pickle), and unpickling runs code")
        name = meta.get("path_name")
        if not isinstance(name, str) or not re.fullmatch(r"(weight|tensor)_\d+", name):
            raise _refuse(path, f"its entry {str(fqn)[:80]!r} is stored as {str(name)[:80]!r}, not as raw tensor bytes")
        if not isinstance(fqn, str) or not _PATH.fullmatch(fqn):
            raise _refuse(path, f"a weight is named {str(fqn)[:80]!r}, not an attribute path")


def _check_program(path: Path, program: Any) -> None:
    """Walk the program's JSON: every operator, shape expression and name that becomes code."""
    stack: list[tuple[str | None, Any]] = [(None, program)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                if "custom_obj" in k or "opaque" in k:
                    if v not in (None, [], {}):
                        raise _refuse(path, f"it refers to a custom or opaque object ({k}), which loads by pickle")
                    continue
                if k == "metadata":  # stack traces and the like: only the module stack is read back
                    stack.append(("nn_module_stack", v.get("nn_module_stack")) if isinstance(v, dict) else (None, None))
                    continue
                stack.append((k, v))
        elif isinstance(value, list):
            stack.extend((key, v) for v in value)
        elif isinstance(value, str):
            _check_string(path, key, value)


def _check_string(path: Path, key: str | None, value: str) -> None:
    if key == "target" and not any(p.fullmatch(value) for p in _OPERATORS):
        raise _refuse(path, f"it calls {value[:80]!r}, which is not one of torch's operators")
    if key == "expr_str" and not _sympy_arithmetic(value):
        raise _refuse(path, f"a shape expression {value[:80]!r} is not plain arithmetic over symbols")
    if key == "forward_arg_names" and not _IDENTIFIER.fullmatch(value):
        raise _refuse(path, f"an argument is named {value[:80]!r}, not an identifier")
    if key in _NAME_KEYS and not _PATH.fullmatch(value):
        raise _refuse(path, f"a name {value[:80]!r} is not an identifier or attribute path")
    if key == "nn_module_stack":  # "key,path,type" entries: the path becomes attribute names in unflatten's code
        for entry in value.split(";"):
            parts = entry.split(",", 2)
            if len(parts) != 3 or not re.fullmatch(r"[A-Za-z0-9_@.]*", parts[0]) or not _PATH.fullmatch(parts[1]):
                raise _refuse(path, f"a module path {entry[:80]!r} is not a dotted name")


def _sympy_arithmetic(expr: str) -> bool:
    """Whether `expr` is made only of sympy's arithmetic names, quoted symbol names, numbers and operators."""
    at = 0
    while at < len(expr):
        m = _SYMPY_TOKEN.match(expr, at)
        if m is None:
            return False
        token = m.group(0)
        if _IDENTIFIER.fullmatch(token) and token not in _SYMPY_NAMES:
            return False
        at = m.end()
    return True


def load_program(path: str | Path) -> Any:
    """The `ExportedProgram` in a `.pt2`, after `check_archive`, read on a route that unpickles nothing.

    Raises:
        UnsafeProgramError: refused by the check (nothing of it loaded).
        ValueError: not a program torch can read (one sentence).
    """
    import torch
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
    from torch.export.pt2_archive._package import PT2ArchiveReader, _load_constants, _load_state_dict

    path = Path(path)
    _, program, sample_bytes = _checked(path)  # the JSON checked is the JSON built
    try:
        try:
            sample = torch.load(io.BytesIO(sample_bytes), weights_only=True) if sample_bytes else ((), {})
        except Exception as exc:  # weights_only refuses anything but tensors and containers: no fallback
            raise _refuse(path, f"its sample inputs are not plain tensors ({str(exc).splitlines()[0][:100]})") from None
        if not isinstance(sample, tuple):
            raise _refuse(path, "its sample inputs are not a tuple")
        reader = PT2ArchiveReader(str(path))
        state_dict = _load_state_dict(reader, MODEL)
        constants = _load_constants(reader, MODEL)
        if not isinstance(state_dict, dict) or not isinstance(constants, dict):
            raise _refuse(path, "its weights are in the legacy pickled format")
        serialized = _dict_to_dataclass(schema.ExportedProgram, program)
        return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, sample)
    except UnsafeProgramError:
        raise
    except Exception as exc:  # torch's deserializer raises many types on a damaged program
        raise ValueError(
            f"{path.name} is not a program torch.export can read: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        ) from None
