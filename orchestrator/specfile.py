"""Reading a spec file safely: size, encoding, duplicate keys, alias bombs, depth, one-line errors.

PyYAML's SafeLoader builds no arbitrary objects, but it resolves duplicate keys silently (last one
wins), expands aliases without limit and composes recursively; ``read_spec_yaml`` checks the
composed document before building it, so that a bad file is refused with one line naming the field
(``SpecError``) before anything starts. ``orchestrator.spec.load_spec`` then validates the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.specerror import MAX_TEXT, SpecError
from orchestrator.specerror import PLAIN_KEY as _PLAIN_KEY
from orchestrator.specerror import clip as _clip
from orchestrator.specerror import show as _show

MAX_SPEC_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # after alias expansion: a "billion laughs" file is refused, not expanded
MAX_YAML_DEPTH = 32  # real specs nest 4 deep
MAX_SCALAR_CHARS = MAX_TEXT  # also keeps int() below Python's 4,300-digit limit


class _Refused(yaml.YAMLError):
    """A YAML document this loader will not build; the message names the field (and lines)."""


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that checks the composed document before building it: duplicate keys (which plain
    YAML loaders resolve silently, last one wins), size after alias expansion, depth and scalar
    length; and turns a value that cannot be built (e.g. the date 2020-13-45) into a YAML error."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_tree(node)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as err:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({err})",
                                                    node.start_mark) from None


def _key_name(key: yaml.Node) -> str:
    text = key.value if isinstance(key, yaml.ScalarNode) else "?"
    return text if _PLAIN_KEY.fullmatch(text) else _show(text)


def _check_tree(root: yaml.Node) -> None:
    """Walk the composed document without recursion. Aliases are walked each time they are used, so
    the count is the size of the data the document expands to."""
    merge = "tag:yaml.org,2002:merge"
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 1)]
    seen_nodes = 0
    while stack:
        node, path, depth = stack.pop()
        seen_nodes += 1
        where = path or "(top level)"
        if seen_nodes > MAX_YAML_NODES:
            raise _Refused(f"{where}: more than {MAX_YAML_NODES} values once aliases are expanded")
        if depth > MAX_YAML_DEPTH:
            raise _Refused(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR_CHARS:
                raise _Refused(f"{where}: a value of {len(node.value)} characters; at most {MAX_SCALAR_CHARS}")
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_at: dict[tuple[str, str], str] = {}
            for key, value in node.value:
                if key.tag == merge:  # `<<: *base`: explicit keys may override merged ones
                    stack.append((value, path, depth))
                    continue
                name = _key_name(key)
                here = f"{path}.{name}" if path else name
                if not isinstance(key, yaml.ScalarNode):
                    raise _Refused(f"{here}: line {key.start_mark.line + 1}: a key must be a plain name")
                at, ident = f"line {key.start_mark.line + 1} column {key.start_mark.column + 1}", (key.tag, key.value)
                if ident in first_at:
                    raise _Refused(f"{here}: duplicate key at {at} (first at {first_at[ident]})")
                first_at[ident] = at
                stack.append((value, here, depth + 1))


def _yaml_error(err: yaml.YAMLError) -> str:
    """A PyYAML error on one line (its own text spans several, with a source excerpt)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        m = err.problem_mark
        what = _clip(" ".join(x for x in (err.problem, f"({err.context})" if err.context else None) if x))
        return f"line {m.line + 1}, column {m.column + 1}: {what}"
    return _clip(str(err))


def read_spec_yaml(p: Path) -> Any:
    """The data of a spec file, or ``SpecError`` naming the file and the field or line at fault."""
    try:
        if not p.is_file():
            raise SpecError(f"{p}: cannot read spec (not a regular file)")
        with p.open("rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{p}: cannot read spec ({err.strerror})") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{p}: cannot read spec (larger than {MAX_SPEC_BYTES} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{p}: cannot read spec (not UTF-8 text: byte {err.start})") from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass: no arbitrary objects
    except _Refused as err:
        raise SpecError(f"{p}: {err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{p}: not valid YAML: {_yaml_error(err)}") from None
    except RecursionError:  # PyYAML composes recursively: thousands of `[` open brackets
        raise SpecError(f"{p}: not valid YAML: nested too deeply") from None
    return data


def check_npy(path: str) -> None:
    """A source's data file: a regular, readable ``.npy`` array of numbers with at least one sample,
    read as the agent reads it (memory-mapped, no pickles) so that what passes here loads there."""
    import numpy as np

    p = Path(path)
    if not p.is_file():  # also refuses FIFOs and devices, which would block or never end
        raise ValueError(f"{_show(path)}: no such regular file")
    try:
        with p.open("rb") as fh:
            magic = fh.read(len(np.lib.format.MAGIC_PREFIX))
        # Checked first: numpy calls anything without this header "pickled data".
        arr = np.load(p, mmap_mode="r", allow_pickle=False) if magic == np.lib.format.MAGIC_PREFIX else None
    except PermissionError:
        raise ValueError(f"{_show(path)}: not readable (permission denied)") from None
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{_show(path)}: not a .npy array ({_clip(str(err))})") from None
    if arr is None:
        raise ValueError(f"{_show(path)}: not a .npy file (no NUMPY header)")
    if not isinstance(arr, np.ndarray):  # e.g. an .npz archive under a .npy name
        raise ValueError(f"{_show(path)}: not a single .npy array")
    if arr.dtype.kind not in "biuf" or arr.ndim < 1 or arr.shape[0] < 1:
        raise ValueError(f"{_show(path)}: an array of {_show(str(arr.dtype))} with shape {arr.shape}; "
                         "sources need numbers with at least one sample on the first axis")
