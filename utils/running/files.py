"""Writing files so that a crash, a kill or a full disk at any moment leaves the previous file or the
new one, never a mixture; and checking output locations before a run does any work.

Every file the project writes goes through `atomic_write`: a temporary file in the same folder (named
`.<name>.partial-XXXXXXXX`, so a later start can recognise and remove one that a killed process left),
flushed and fsynced, given the mode a plain `open` would give under the user's umask, then renamed over
the destination. Any failure, whatever exception the writer raises (`torch.save` reports a full disk as a
RuntimeError), removes the temporary file and becomes an OutputWriteError naming the path.
"""
import contextlib
import json
import math
import os
import shutil
import tempfile
from typing import Any, Iterator, List

from ..errors import RunError, UserError

TEMP_TAG = ".partial-"


class OutputWriteError(RunError):
    """A file could not be written; the file that was there before is unchanged."""


def _umask() -> int:
    # /proc gives the umask without changing it (os.umask must set one to read one, which would race
    # with other threads creating files).
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def new_file_mode() -> int:
    """The permissions `open(path, 'w')` gives a new file: 0o666 less the umask (0o644 under 022)."""
    return 0o666 & ~_umask()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


@contextlib.contextmanager
def atomic_write(path: "os.PathLike[str] | str", mode: str = "wb", **open_kwargs) -> Iterator[Any]:
    """A file object whose content replaces `path` only once it has been completely written and synced.
    Missing parent folders are created."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)  # checked up front as "exists or can be created"
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}{TEMP_TAG}", dir=directory)
    except OSError as exc:
        raise OutputWriteError(f"cannot write {path} ({_reason(exc)}); the previous file, if any, is unchanged: "
                               "free space or fix the folder's permissions") from None
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, Exception) and not isinstance(exc, (UserError, RunError)):
            raise OutputWriteError(f"cannot write {path} ({_reason(exc)}); the previous file, if any, is "
                                   "unchanged: free space or choose another location") from exc
        raise


def _strict_json(value):
    """JSON has no NaN or infinity: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


def write_json(path: str, payload: Any) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(_strict_json(payload), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")


def copy_file(source: str, destination: str) -> None:
    with atomic_write(destination) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, length=1 << 20)


def append_text(path: str, text: str) -> None:
    """Add `text` (whole lines) to the end of `path`, synced. A line a crash left half written is removed
    first, so the file only ever holds whole lines."""
    try:
        with open(path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.seek(0)
                    content = f.read()
                    f.truncate(content.rfind(b"\n") + 1)
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputWriteError(f"cannot write {path} ({_reason(exc)}); the rows written before are intact: free "
                               "space or fix the folder's permissions") from None


def remove_stale_temps(folder: str) -> List[str]:
    """Delete temporary files a killed process left in `folder` (not in its sub-folders); returns their
    names. Call it only while holding the folder, so no live writer's file is taken."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and TEMP_TAG in entry.name and entry.is_file(follow_symlinks=False):
                _remove_quietly(entry.path)
                removed.append(entry.name)
    return removed


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_name_lengths(path: str, flag: str, existing: str) -> None:
    """Names the file system refuses (ENAMETOOLONG) are found now, not after training an epoch."""
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        name_max, path_max = 255, 4096
    for part in os.path.abspath(path).split(os.sep):
        if len(os.fsencode(part)) > name_max:
            raise UserError(f"{flag} {path}: the name {part[:24]}... is {len(os.fsencode(part))} bytes long, more than "
                            f"the {name_max} the file system allows: choose a shorter name")
    if len(os.fsencode(os.path.abspath(path))) + 64 > path_max:  # room for the files written inside
        raise UserError(f"{flag} {path}: the path is too long for the file system ({path_max} bytes at most, with "
                        "the run's own file names): choose a shorter one")


def check_output_dir(path: str, flag: str) -> None:
    """Fail now, with the fix, if `path` cannot be used as an output folder: it (or the folder it would
    be created in) must be a writable folder with names the file system allows. Creates nothing."""
    existing = _nearest_existing(path)
    _check_name_lengths(path, flag, existing)
    if not os.path.isdir(existing):
        what = "is a file" if existing == os.path.abspath(path) else f"would be created below {existing}, a file"
        raise UserError(f"{flag} {path} {what}, not a folder: give a folder path")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".write-test{TEMP_TAG}", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write in {existing} ({_reason(exc)}): choose a writable location, "
                        "e.g. on a scratch or home file system") from None


def check_output_file(path: str, flag: str) -> None:
    """The same check for a file to be written: its folder must be usable and it must not be a folder."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a folder: give a file name, e.g. {os.path.join(path, 'out.csv')}")
    check_output_dir(os.path.dirname(os.path.abspath(path)), flag)
    _check_name_lengths(path, flag, _nearest_existing(os.path.dirname(os.path.abspath(path))))
