"""One source for every setting: a config dataclass field carries its default, help, choices and flag name.

The CLI (``cli/generate.py``) builds its options from these fields, so a setting added to a config is a
flag with its help without touching the CLI, and the help a user reads is the one next to the code that
uses it. Range and choice checks stay in each config's ``__post_init__`` (one-line errors for library
callers too); ``choices`` only lists the values in the help.
"""
from __future__ import annotations

import dataclasses
from typing import Any

_NO_DEFAULT = dataclasses.MISSING


def option(default: Any = _NO_DEFAULT, *, help: str = "", choices: tuple[str, ...] | None = None,
           flag: str | None = None, argument: bool = False, cli: bool = True, show_default: str | None = None,
           factory: Any = _NO_DEFAULT):
    """A dataclass field with what the command line needs to present it.

    ``flag``: the option name when it differs from the field's (``sensitivity_method`` is ``--sensitivity``);
    ``argument``: a positional argument instead of an option; ``cli=False``: a library-only setting;
    ``show_default``: the default as the help should state it (when the field's is None = "decided later");
    ``factory``: a nested config (its own fields become options of the same command)."""
    metadata = {"help": help, "choices": choices, "flag": flag, "argument": argument, "cli": cli,
                "show_default": show_default}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults: use a tuple")
    if factory is not _NO_DEFAULT:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def described(cls) -> list[tuple[dataclasses.Field, dict]]:
    """The fields of a config class that the command line shows, with their metadata (nested configs too)."""
    return [(f, dict(f.metadata)) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
