"""How a configuration option is declared: once, as a field of its section's dataclass, with its flags,
default, help text and check. The parser (parser.py) is generated from these declarations, and a bad value
fails with the one-line message its check gives, naming the flag.

    @section
    class OptimSettings(Section):
        lr: float = option("--lr", "--learning-rate", default=0.1, check=at_least(0), help="initial learning rate")

Fields made with `derived()` are not options: utils/config/resolve.py settles them (automatic values, what
a checkpoint tells) before the run starts. A section's `check()` holds the checks that relate its fields.
"""
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from ..errors import UserError

# value -> None if good, else what is wrong: "must be >= 0" (said as "--lr must be >= 0, got -1") or a remark
# on the value, "is larger than 4096 pixels" (said as "--crop-size 5000 is larger than 4096 pixels"). A check
# may also raise UserError itself for a message of its own.
Check = Callable[[Any], Optional[str]]


@dataclass(frozen=True)
class Option:
    flags: Tuple[str, ...]        # ("--lr", "--learning-rate"); () for the positional DIR
    help: str
    type: Optional[Callable] = None
    choices: Optional[Sequence] = None
    check: Optional[Check] = None
    metavar: Optional[str] = None
    action: Optional[Any] = None  # "store_true", argparse.BooleanOptionalAction, ...
    nargs: Optional[str] = None
    const: Any = None
    group: Optional[str] = ""     # the --help group; "" for the section's own (Section.GROUP), None: ungrouped

    @property
    def flag(self) -> str:
        """The name messages use: the first long flag (`--lr`), or the metavar of a positional."""
        longs = [f for f in self.flags if f.startswith("--")]
        return (longs or list(self.flags) or [self.metavar or "DIR"])[0]


def option(*flags: str, default: Any = None, help: str, **kwargs) -> Any:
    """A dataclass field that is a command-line option (see Option for the keywords)."""
    return field(default=default, metadata={"option": Option(tuple(flags), help, **kwargs)})


def derived(default: Any = None) -> Any:
    """A field that is not typed by the user: resolve.py sets it."""
    return field(default=default, metadata={"derived": True})


def option_of(f) -> Optional[Option]:
    return f.metadata.get("option")


class Section:
    """Base of the configuration sections: frozen dataclasses whose construction checks every option's
    value (each option's own check, then the section's `check()`), so a section that exists is valid."""

    GROUP = ""  # the --help group of the section's options that name none

    def __post_init__(self):
        for f in fields(self):
            opt = option_of(f)
            value = getattr(self, f.name)
            if opt is not None and opt.check is not None and value is not None:
                problem = opt.check(value)
                if problem and problem.startswith("must"):
                    raise UserError(f"{opt.flag} {problem}, got {value}")
                if problem:
                    raise UserError(f"{opt.flag} {value} {problem}")
        self.check()

    def check(self) -> None:
        """Checks that relate several fields of the section; raise UserError with the fix."""

    @classmethod
    def options(cls):
        """(field name, Option) of every option of the section, in declaration order."""
        return [(f.name, option_of(f)) for f in fields(cls) if option_of(f) is not None]

    @classmethod
    def from_values(cls, values: Dict[str, Any]) -> "Section":
        """The section of parsed values (options absent from `values` keep their declared defaults)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if option_of(f) is not None and f.name in values})

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        return {f.name: f.default for f in fields(cls) if option_of(f) is not None and f.default is not MISSING}


def section(cls):
    """Decorator: a frozen dataclass section."""
    return dataclass(frozen=True)(cls)


# Checks. Each returns what is wrong with a value, in the words of the message "<flag> <problem>, got <value>".

def positive_int(value) -> Optional[str]:
    return None if value > 0 else "must be a positive integer"


def at_least(low) -> Check:
    def check(value):
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        return None if value >= low else f"must be >= {low}"
    return check


def finite(value) -> Optional[str]:
    return None if math.isfinite(value) else "must be a finite number"


def between(low, high, closed_high: bool = False, open_low: bool = False) -> Check:
    """low <= value < high (or <= high when closed_high; low < value when open_low)."""
    left, right = ("(" if open_low else "["), ("]" if closed_high else ")")

    def check(value):
        if not math.isfinite(value):
            return "must be a finite number"
        above = value > low if open_low else value >= low
        below = value <= high if closed_high else value < high
        return None if above and below else f"must be in {left}{low}, {high}{right}"
    return check


def above(low) -> Check:
    def check(value):
        if not math.isfinite(value):
            return "must be a finite number"
        return None if value > low else f"must be > {low}"
    return check


def all_of(*checks: Check) -> Check:
    def check(value):
        return next((problem for problem in (c(value) for c in checks) if problem), None)
    return check
