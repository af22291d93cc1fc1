"""Reading inputs and writing outputs with errors a user can act on.

- :func:`check_output`: before any work, that a path a command will write can be written (one line
  otherwise). It creates nothing, so a refused command leaves no trace.
- :func:`check_replaceable`: that ``--force`` would replace only a previous output, never a file or a
  folder of something else.
- :func:`read_text_file`: a text input (samples, prompts, recipes), with a clear error for a missing
  file, a folder, binary data or text that is not UTF-8.
- :func:`atomic_write_text`, :func:`atomic_write_texts`, :func:`atomic_directory`: outputs written
  under a temporary name and renamed, so an interrupted run never leaves one that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from wmtp_cli.errors import UsageError


def check_output(path: str | os.PathLike, what: str, kind: Literal["file", "folder"] = "file") -> Path:
    """``path`` if a command can write a ``kind`` there; a :class:`UsageError` saying why not otherwise.

    Checked: every existing ancestor is a folder, the nearest one is writable (the rest can be created),
    and an existing ``path`` is of the right kind. Whether an existing output may be replaced is the
    caller's policy (``--force``, ``--resume``, :func:`check_replaceable`). Nothing is created.
    """
    path = Path(path).expanduser()
    if path.exists() or path.is_symlink():
        if kind == "file" and path.is_dir():
            raise UsageError(f"{what} {path} is a folder: give the path of a file to write")
        if kind == "folder" and not path.is_dir():
            raise UsageError(f"{what} {path} is a file, not a folder: give a folder path (or remove the file)")
        _require_writable(path if kind == "folder" else path.parent, path, what)
        return path
    nearest = next(folder for folder in path.absolute().parents if folder.exists())  # the root always does
    if not nearest.is_dir():
        raise UsageError(f"{what} {path} cannot be created: {nearest} is a file, not a folder; choose another path")
    _require_writable(nearest, path, what)
    return path


def _require_writable(folder: Path, path: Path, what: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path} cannot be written: no permission to write in {folder}")


def check_replaceable(path: str | os.PathLike, what: str, marker: str) -> None:
    """That ``--force`` may replace ``path``: absent, an empty folder, or a folder holding ``marker``.

    ``marker`` is a file the command itself writes into its outputs, so a folder without it is
    someone else's and is never deleted.
    """
    path = Path(path).expanduser()
    check_output(path, what, kind="folder")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise UsageError(
            f"{what} {path} exists and is not an earlier output of this command (it has no {marker}), so --force "
            "will not replace it: choose another path, or empty or remove it yourself"
        )


def read_text_file(path: str | os.PathLike, what: str, hint: str = "give a UTF-8 text file") -> str:
    """The UTF-8 text in ``path`` (which may be empty); a :class:`UsageError` for anything else.

    Refused with one line that says which, then ``hint``: a missing path, a folder, a file holding NUL
    bytes (binary data: text never does) and bytes that are not UTF-8.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder: {hint}")
    if not path.is_file():
        why = "does not exist" if not path.exists() else "is not a regular file"
        raise UsageError(f"{what} {path} {why}: {hint}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read ({exc.strerror or exc}): {hint}") from None
    if b"\0" in data:
        raise UsageError(f"{what} {path} looks binary (it holds NUL bytes): {hint}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start} cannot be decoded): {hint}") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename it."""
    atomic_write_texts({path: text})
    return Path(path)


def atomic_write_texts(files: Mapping[str | os.PathLike, str]) -> None:
    """Write several files that belong together: every one to a temporary name first, then all renamed.

    A failure while writing leaves none of them (and no temporary file) behind.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success rename it to ``final``.

    On any exception the temporary folder is removed and ``final`` is untouched. With ``force`` an
    existing ``final`` is replaced only after the new folder is complete; a file is never replaced.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise UsageError(f"{final} is a file, not a folder: it is not replaced by a folder; choose another path")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            if not force:
                raise FileExistsError(final)
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
