"""Output files of the commands that write single files (bench, report): checked before any work,
written atomically, and never written over a file that sensi-edge did not write.

A file is "ours" when it carries a mark we put there: latency-report JSON has our schema and was
written by bench on this kind of CPU (a report from a board's run.py, or from another machine, holds
measurements that cannot be retaken here),
Markdown ends with ``MARK``, PNGs carry it in their metadata (matplotlib's ``Software`` key).
Anything else (a user's notes, a model.onnx, a compress report.json) is refused unless the user
passes ``--overwrite``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import SensiEdgeError

MARK = "<!-- written by sensi-edge -->"
PNG_SOFTWARE = "sensi-edge"


def is_ours(path: Path) -> bool:
    path = Path(path)
    try:
        if path.suffix == ".json":
            from .bundle_runtime import REPORT_SCHEMA

            from .bundle_runtime import cpu_info

            data = json.loads(path.read_text())
            if not (isinstance(data, dict) and data.get("schema") == REPORT_SCHEMA and data.get("source") == "bench"):
                return False
            cpu = (data.get("environment") or {}).get("cpu") or {}
            return cpu.get("model") == cpu_info().get("model")
        if path.suffix == ".md":
            return path.read_text().rstrip().endswith(MARK)
        if path.suffix == ".png":
            with path.open("rb") as fh:
                return PNG_SOFTWARE.encode() in fh.read(4096)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return False


def check_writable(paths: list[Path], overwrite: bool = False, flag: str = "--output") -> None:
    """Refuse, before any work starts, outputs that cannot be written or would replace a foreign file."""
    for path in map(Path, paths):
        if path.is_dir():
            raise SensiEdgeError(f"{flag} {path} is a folder; give a file name such as {path / 'report.json'}")
        if path.exists() and not overwrite and not is_ours(path):
            raise SensiEdgeError(f"{path} exists and was not written by sensi-edge; choose another {flag} or pass "
                                 "--overwrite to replace it")
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise SensiEdgeError(f"cannot write {path}: {exc.strerror or exc}; choose a writable {flag}") from None


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
