"""The two kinds of failure every entry point reports, each as one line and an exit code.

UserError (exit 2): the input is wrong (a flag, a path, a dataset, a checkpoint); nothing has run, and the
    message says what to change.
RunError (exit 3): the run started and could not go on (a full disk, a diverging loss, unreadable
    images); every file written before the failure is intact.

Every project exception derives from one of the two, so the entry points map errors by base class.
This module imports nothing from the project: models/ and utils/ both build on it.
"""


class UserError(ValueError):
    """Bad input: fix what the message names and run again."""

    exit_code = 2


class RunError(RuntimeError):
    """The run failed after it started; earlier files are intact."""

    exit_code = 3


def one_line(exc: BaseException) -> str:
    """The error's own message on one line. Errors raised in DataLoader workers come back wrapped in a
    traceback whose last line holds the original message."""
    text = str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and "Traceback" in text:
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return " ".join(lines) or type(exc).__name__


class CheckpointError(UserError):
    """A checkpoint file that cannot be used; the message names the file and the reason."""
