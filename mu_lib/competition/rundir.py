"""The run directory: atomic writes, result files, hashes of models and splits, derived seeds.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mu_lib.data import Splits

_FORMAT = 2  # 2: environment and shard plan in the manifest, timing references per machine
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Any]:
    """Open a temporary file beside ``path`` for binary writing; move it onto ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, obj: Any) -> None:
    with _atomic(path) as fh:
        fh.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _write_result(path: Path, result: Mapping[str, Any]) -> None:
    arrays = {k: np.asarray(v) for k, v in result.items() if k != "meta"}
    arrays["meta"] = np.asarray(json.dumps(result.get("meta", {}), sort_keys=True))
    with _atomic(path) as fh:
        np.savez(fh, **arrays)


def _read_result(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files if k != "meta"}
        out["meta"] = json.loads(str(z["meta"])) if "meta" in z.files else {}
    for k in ("retain_acc", "forget_acc", "test_acc", "seconds"):
        out[k] = float(out[k])
    return out


def _sha256(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(len(c).to_bytes(8, "little"))
        h.update(c)
    return h.hexdigest()


def _state_hash(model: nn.Module) -> str:
    parts: list[bytes] = []
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        parts += [k.encode(), str(tuple(t.shape)).encode(), str(t.dtype).encode(), t.numpy().tobytes()]
    return _sha256(*parts)


def _splits_hash(splits: Splits) -> str:
    ds = splits.data
    parts = [ds.name.encode(), str(tuple(ds.x.shape)).encode(), ds.y.numpy().tobytes(),
             np.float64(ds.x.double().sum()).tobytes()]
    parts += [np.asarray(splits.indices(p), np.int64).tobytes() for p in ("retain", "forget", "val", "test")]
    return _sha256(*parts)


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """``mu_lib``'s version and a hash of its source files: a run resumes only under the same code.

    Computed once per process (the code a process runs is the code it imported)."""
    import mu_lib

    root = Path(mu_lib.__file__).parent
    files = sorted(root.rglob("*.py"))
    digest = _sha256(*(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() for p in files))
    return f"{mu_lib.__version__} (source sha256 {digest[:12]})"


def _derive_seed(seed: int, tag: str, index: int) -> int:
    """An independent, reproducible seed for unit ``(tag, index)`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(tag.encode()), int(index)]).generate_state(1)[0] >> 1)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)
