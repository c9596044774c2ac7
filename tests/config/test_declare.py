"""utils/config/declare.py: an option is declared once (flags, default, help, check); a section checks every
value when it is built and says what is wrong in one line naming the flag."""
import dataclasses
from typing import Optional

import pytest

from utils.config.declare import (Option, Section, above, all_of, at_least, between, derived, finite, option,
                                  option_of, positive_int, section)
from utils.errors import UserError


def too_big(value) -> Optional[str]:
    return "is larger than 100 pixels" if value > 100 else None


@section
class Toy(Section):
    GROUP = "toy group"
    count: int = option("-n", "--count", type=int, default=1, check=positive_int, help="how many")
    rate: float = option("--rate", "--learning-rate", type=float, default=0.5, check=between(0, 1), help="a rate")
    side: Optional[int] = option("--side", type=int, check=too_big, help="a side")
    folder: Optional[str] = option(metavar="DIR", nargs="?", help="where")
    settled: int = derived(7)

    def check(self) -> None:
        if self.count > 10 and self.rate > 0.9:
            raise UserError(f"--count {self.count} with --rate {self.rate}: lower one of them")


def test_the_declaration_is_a_frozen_dataclass_with_its_defaults():
    toy = Toy()
    assert (toy.count, toy.rate, toy.side, toy.folder, toy.settled) == (1, 0.5, None, None, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        toy.count = 2
    assert Toy.defaults() == {"count": 1, "rate": 0.5, "side": None, "folder": None}  # derived fields are no options


def test_options_are_listed_in_declaration_order_and_derived_fields_are_not():
    names = [name for name, _ in Toy.options()]
    assert names == ["count", "rate", "side", "folder"]
    opts = dict(Toy.options())
    assert isinstance(opts["count"], Option) and opts["count"].flags == ("-n", "--count")
    assert opts["count"].help == "how many" and opts["count"].type is int and opts["count"].check is positive_int
    settled = next(f for f in dataclasses.fields(Toy) if f.name == "settled")
    assert option_of(settled) is None and settled.metadata["derived"] is True


def test_messages_name_the_first_long_flag_or_the_positional():
    opts = dict(Toy.options())
    assert opts["count"].flag == "--count"          # not -n
    assert opts["rate"].flag == "--rate"            # the first long one
    assert opts["folder"].flag == "DIR"             # a positional: its metavar
    assert Option(("-x",), "short only").flag == "-x"
    assert Option((), "no metavar").flag == "DIR"


@pytest.mark.parametrize("values,message", [
    ({"count": 0}, "--count must be a positive integer, got 0"),
    ({"rate": 1.0}, "--rate must be in [0, 1), got 1.0"),
    ({"rate": float("nan")}, "--rate must be a finite number, got nan"),
    ({"side": 500}, "--side 500 is larger than 100 pixels"),  # a remark on the value reads "<flag> <value> <remark>"
    ({"count": 11, "rate": 0.95}, "--count 11 with --rate 0.95: lower one of them"),  # the section's own check
])
def test_a_bad_value_is_one_line_naming_the_flag(values, message):
    with pytest.raises(UserError) as info:
        Toy(**values)
    assert str(info.value) == message


def test_unset_optional_values_are_not_checked():
    assert Toy(side=None).side is None
    assert Toy(side=100).side == 100


def test_from_values_takes_the_section_options_and_keeps_defaults_for_the_rest():
    toy = Toy.from_values({"count": 3, "unrelated": "ignored", "settled": 99})
    assert (toy.count, toy.rate, toy.settled) == (3, 0.5, 7)  # derived fields are never taken from the command line
    with pytest.raises(UserError, match="--count must be a positive integer, got -1"):
        Toy.from_values({"count": -1})


def test_a_check_may_raise_its_own_user_error():
    def named(value):
        raise UserError(f"no such thing {value!r}")

    @section
    class Named(Section):
        name: str = option("--name", default="ok", check=lambda v: None if v == "ok" else named(v), help="x")

    assert Named().name == "ok"
    with pytest.raises(UserError, match="^no such thing 'bad'$"):
        Named(name="bad")


@pytest.mark.parametrize("check,good,bad", [
    (positive_int, [1, 10 ** 9], [(0, "must be a positive integer"), (-3, "must be a positive integer")]),
    (at_least(0), [0, 0.0, 5], [(-1, "must be >= 0"), (float("inf"), "must be a finite number"),
                                (float("nan"), "must be a finite number")]),
    (at_least(1), [1], [(0, "must be >= 1")]),
    (finite, [0.0, -1e300], [(float("inf"), "must be a finite number"), (float("-inf"), "must be a finite number")]),
    (between(0, 1), [0, 0.999], [(1, "must be in [0, 1)"), (-0.1, "must be in [0, 1)"),
                                 (float("nan"), "must be a finite number")]),
    (between(0, 1, closed_high=True), [0, 1], [(1.01, "must be in [0, 1]")]),
    (between(0, 1, closed_high=True, open_low=True), [1e-9, 1], [(0, "must be in (0, 1]")]),
    (above(0), [1e-12], [(0, "must be > 0"), (-2, "must be > 0"), (float("inf"), "must be a finite number")]),
])
def test_checks(check, good, bad):
    for value in good:
        assert check(value) is None, value
    for value, problem in bad:
        assert check(value) == problem, value


def test_all_of_gives_the_first_problem():
    check = all_of(at_least(0), lambda v: "is odd" if v % 2 else None)
    assert check(4) is None
    assert check(-1) == "must be >= 0"
    assert check(3) == "is odd"
