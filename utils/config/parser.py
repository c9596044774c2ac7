"""The command line, generated from the declared sections (sections.py): one argparse option per declared
field, with the entry point's recipe defaults shown once in --help, and the set of options the user typed
(recipe and demo-dataset defaults never override those). Parsing only: the sections check the values
when they are built.
"""
import argparse
from typing import Any, Dict, Iterable, Optional, Sequence, Set, Tuple, Type

from .declare import Section

# --help groups, in order: the official CLI's flags first.
GROUP_TITLES = {
    "official flags": "official flags",
    "distributed": "distributed (prefer torchrun, which sets these from its environment)",
    "speed and numerics": "speed and numerics",
    "schedule and regularisation": "schedule and regularisation",
    "data": "data",
    "training recipe": "training recipe options (torchvision's reference names and meanings)",
    "output": "output",
}


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET = _Unset()  # the parser's default for every option: what stays UNSET was not typed


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors on one line (argparse prints the whole usage first): exit 2, as always."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the entry point's usage examples as written."""


def _shown_default(value: Any) -> Optional[str]:
    if value is None or value is False or value == "" or isinstance(value, _Unset):
        return None
    return str(value)


def add_options(parser: argparse.ArgumentParser, sections: Iterable[Type[Section]], defaults: Dict[str, Any]) -> None:
    """Add every option of `sections` to `parser`, grouped for --help; `defaults` are the values used when an
    option is not typed (shown in its help)."""
    groups: Dict[str, Any] = {}
    for title in GROUP_TITLES.values():
        groups[title] = parser.add_argument_group(title)
    for cls in sections:
        for name, opt in cls.options():
            group_key = cls.GROUP if opt.group == "" else opt.group
            target = parser if group_key is None else groups.setdefault(GROUP_TITLES.get(group_key, group_key),
                                                                         parser.add_argument_group(group_key))
            shown = _shown_default(defaults.get(name))
            text = opt.help if shown is None or "default" in opt.help else f"{opt.help} (default: {shown})"
            kwargs = {"help": text, "default": UNSET}
            for key in ("type", "choices", "metavar", "action", "nargs", "const"):
                value = getattr(opt, key)
                if value is not None:
                    kwargs[key] = value
            if opt.flags:
                kwargs["dest"] = name
                target.add_argument(*opt.flags, **kwargs)
            else:
                target.add_argument(name, **kwargs)


def declared_defaults(sections: Iterable[Type[Section]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for cls in sections:
        out.update(cls.defaults())
    return out


def parse_options(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
                  defaults: Dict[str, Any]) -> Tuple[Dict[str, Any], Set[str]]:
    """(values, the names the user typed): typed values over `defaults`."""
    typed = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not UNSET}
    return {**defaults, **typed}, set(typed)


def build_parser(sections: Iterable[Type[Section]], defaults: Dict[str, Any], description: str,
                 prog: Optional[str] = None) -> OneLineParser:
    parser = OneLineParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    add_options(parser, sections, defaults)
    return parser
