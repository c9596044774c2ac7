"""utils/config/parser.py: the command line generated from the declarations: one argparse option per declared
field, defaults shown once in --help (the recipe's, where it has one), the set of typed options, and argparse
errors on one line."""
import argparse
import re

import pytest

import light_main
import main
from utils.config.parser import GROUP_TITLES, UNSET, build_parser, declared_defaults, parse_options
from utils.config.sections import SECTIONS


def parser_for(recipe):
    defaults = {**declared_defaults(SECTIONS.values()), **recipe}
    return build_parser(SECTIONS.values(), defaults, "the description", prog="main.py"), defaults


def actions_by_dest(parser):
    return {action.dest: action for action in parser._actions if action.dest != "help"}


def test_every_declared_option_is_one_argparse_option_with_its_flags():
    parser, _ = parser_for(main.RECIPE)
    actions = actions_by_dest(parser)
    declared = [(name, opt) for cls in SECTIONS.values() for name, opt in cls.options()]
    assert sorted(actions) == sorted(name for name, _ in declared)
    for name, opt in declared:
        negated = tuple(f"--no-{flag[2:]}" for flag in opt.flags) if opt.action is argparse.BooleanOptionalAction else ()
        assert tuple(actions[name].option_strings) == tuple(opt.flags) + negated, name
        assert actions[name].default is UNSET, name  # what stays UNSET was not typed
    flags = [flag for action in parser._actions for flag in action.option_strings]
    assert len(flags) == len(set(flags)), "a flag is declared twice"


@pytest.mark.parametrize("recipe", [main.RECIPE, light_main.RECIPE], ids=["main", "light_main"])
def test_help_shows_each_default_once_and_the_recipes_value(recipe):
    parser, defaults = parser_for(recipe)
    for name, action in actions_by_dest(parser).items():
        assert action.help.count("default") <= 1, (name, action.help)
        value = defaults.get(name)
        if value not in (None, False, "") and "default" not in action.help.replace(f"(default: {value})", ""):
            assert action.help.endswith(f"(default: {value})"), (name, action.help)
    shown = actions_by_dest(parser)
    assert shown["epochs"].help.endswith(f"(default: {recipe['epochs']})")
    assert shown["lr"].help.endswith(f"(default: {recipe['lr']})")
    assert shown["arch"].help.endswith(f"(default: {recipe['arch']})")
    assert "(default:" not in shown["evaluate"].help       # False is no default worth showing
    assert "(default:" not in shown["action"].help         # nor ""
    # A help text that already says what the default is keeps its own words only.
    assert shown["ksize"].help.endswith("(default: the released sizes, or those in the checkpoint)")


def test_help_groups_come_in_order_and_the_official_flags_first(capsys):
    parser, _ = parser_for(main.RECIPE)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: main.py") and "the description" in text
    positions = [text.index(f"\n{title}:\n") for title in GROUP_TITLES.values()]
    assert positions == sorted(positions)
    official = text[positions[0]:positions[1]]
    for flag in ("-e, --evaluate", "--resume PATH", "-a ARCH, --arch ARCH, --model ARCH", "-b BATCH_SIZE",
                 "--lr LR, --learning-rate LR", "--epochs EPOCHS", "--gpu GPU"):
        assert flag in official, flag
    assert re.search(r"positional arguments:\n  DIR ", text)
    for default in re.findall(r"\(default: ([^)]*)\)", text):
        assert default.strip(), "an empty default shown"


def test_typed_options_over_defaults_and_the_set_of_typed_names():
    parser, defaults = parser_for(main.RECIPE)
    values, explicit = parse_options(parser, ["--epochs", "3", "--no-progress", "-a", "resnet18", "/data"], defaults)
    assert explicit == {"epochs", "progress", "arch", "data"}
    assert (values["epochs"], values["progress"], values["arch"], values["data"]) == (3, False, "resnet18", "/data")
    assert values["lr"] == main.RECIPE["lr"] and values["momentum"] == 0.9  # recipe, then declared defaults
    assert UNSET not in values.values()
    values, explicit = parse_options(parser, ["--epochs", "100"], defaults)  # typed, even when equal to the default
    assert explicit == {"epochs"} and values["data"] is None


def test_optional_value_flags_and_aliases():
    parser, defaults = parser_for(main.RECIPE)
    values, _ = parse_options(parser, ["--pretrained", "--model", "eca_resnet18", "--lr-step-size", "7",
                                       "--val-resize-size", "40", "--compile", "--no-channels-last"], defaults)
    assert values["pretrained"] is True  # the flag without a path: refused later, with the fix
    assert (values["arch"], values["lr_step"], values["val_resize"]) == ("eca_resnet18", 7, 40)
    assert (values["compile"], values["channels_last"]) == (True, False)


@pytest.mark.parametrize("argv,message", [
    (["-b", "abc"], "argument -b/--batch-size: invalid int value: 'abc'"),
    (["--data-backend", "fast"], "argument --data-backend: invalid choice: 'fast'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_argparse_errors_are_one_line_exit_2(argv, message, capsys):
    parser, defaults = parser_for(main.RECIPE)
    with pytest.raises(SystemExit) as info:
        parse_options(parser, argv, defaults)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("main.py: error: ") and message in err and err.rstrip().endswith("(see --help)")
