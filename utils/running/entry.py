"""What every command-line tool of the project promises the shell: a problem the user can fix is one line
on stderr and exit 2, a run that failed after starting is one line and exit 3, and output that cannot be
shown (stdout closed with `>&-`, a reader that went away as in `| head -1`) never stops the work: it is
dropped, and the tool carries on and exits as it would have.
"""
import io
import os
import sys
from typing import Callable, Optional, Sequence

from ..errors import RunError, UserError, one_line


class _TolerantStream(io.TextIOBase):
    """A text stream that falls silent instead of failing once its destination is gone."""

    def __init__(self, inner):
        self.inner = inner

    def write(self, text: str) -> int:
        try:
            return self.inner.write(text)
        except (BrokenPipeError, OSError, ValueError):
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self.inner.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._silence()

    def _silence(self) -> None:
        self.inner = open(os.devnull, "w")

    def isatty(self) -> bool:
        try:
            return self.inner.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self):
        return getattr(self.inner, "encoding", "utf-8")


def protect_standard_streams() -> None:
    """Closed standard file descriptors get /dev/null (else the next file opened, a checkpoint, would take
    descriptor 1 and receive what is printed), and stdout/stderr fall silent when their reader goes away."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: `fd` itself
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            stream = open(os.devnull, "w")
        if not isinstance(stream, _TolerantStream):
            setattr(sys, name, _TolerantStream(stream))


def report_error(prog: str, exc: BaseException, rank: int = 0) -> None:
    """The error's one line. A user error is the same on every rank: the first says it; a run error can be
    one rank's, so every rank says its own, marked."""
    if rank == 0:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr, flush=True)
    elif isinstance(exc, RunError):
        print(f"[rank {rank}] {prog}: error: {one_line(exc)}", file=sys.stderr, flush=True)


def run_cli(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None,
            prog: Optional[str] = None) -> int:
    """Run `main(argv)` under the contract above; returns the exit code."""
    protect_standard_streams()
    prog = prog or os.path.basename(sys.argv[0]) or "main.py"
    try:
        return main(argv)
    except (UserError, RunError) as exc:
        report_error(prog, exc, int(os.environ.get("RANK", "0")))
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130
