"""Typer commands whose options are a config dataclass's fields (``sensi_edge.options``): one source of help.

``@from_config(CompressConfig)`` turns every field the config shows (nested configs such as the recipe
included) into an option with the field's default, help and flag name, builds the config from the parsed
values and hands it to the command. The checks stay in the config (``__post_init__``), so the library and
the CLI refuse the same values with the same one-line errors.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import List, Optional

import typer

from sensi_edge.options import described


@dataclass(frozen=True)
class _Flag:
    path: tuple[str, ...]  # field names from the outer config down (("recipe", "epochs"))
    param: inspect.Parameter
    is_tuple: bool


def _annotation(tp) -> tuple[object, bool]:
    """A field's type as click can parse it: ``X | None`` -> Optional[X], ``tuple[X, ...]`` -> a repeated option."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        inner, is_tuple = _annotation(next(a for a in args if a is not type(None)))
        return Optional[inner], is_tuple
    if typing.get_origin(tp) is tuple:
        return List[args[0]], True
    return tp, False


def _help(meta: dict) -> str:
    text, choices = meta["help"], meta["choices"]
    if choices and not all(c in text for c in choices):
        text += f" (one of: {', '.join(choices)})"
    return text


def _flags(cls, skip: tuple[str, ...], path: tuple[str, ...] = ()) -> list[_Flag]:
    hints = typing.get_type_hints(cls)
    out = []
    for f, meta in described(cls):
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            out += _flags(hints[f.name], skip, (*path, f.name))
            continue
        annotation, is_tuple = _annotation(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = (list(f.default) or None) if is_tuple else f.default
        else:
            default = ...
        kind = typer.Argument if meta["argument"] else typer.Option
        extra = {"show_default": meta["show_default"]} if meta["show_default"] else {}
        param = inspect.Parameter(meta["flag"] or f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                  default=kind(default, help=_help(meta), **extra))
        out.append(_Flag((*path, f.name), param, is_tuple))
    return out


def _build(cls, flags: list[_Flag], values: dict, depth: int = 0):
    """``cls`` from the parsed values; a nested config from the flags under its field name."""
    kwargs, nested = {}, {}
    for flag in flags:
        value = values[flag.param.name]
        if flag.is_tuple:
            value = tuple(value or ())
        if len(flag.path) == depth + 1:
            kwargs[flag.path[depth]] = value
        else:
            nested.setdefault(flag.path[depth], []).append(flag)
    hints = typing.get_type_hints(cls)
    for name, inner in nested.items():
        kwargs[name] = _build(hints[name], inner, values, depth + 1)
    return cls(**kwargs)


def from_config(cls, *, skip: tuple[str, ...] = (), extra: tuple[inspect.Parameter, ...] = ()):
    """Decorator: the command's options are ``cls``'s fields (minus ``skip``) and ``extra``; the function is
    called as ``fn(config, **extras)``."""
    flags = _flags(cls, skip)
    names = [f.param.name for f in flags] + [p.name for p in extra]
    if len(set(names)) != len(names):
        raise TypeError(f"two options of {cls.__name__} share a name: {sorted(n for n in names if names.count(n) > 1)}")

    def wrap(fn):
        def command(**kwargs):
            values = {f.param.name: kwargs.pop(f.param.name) for f in flags}
            return fn(_build(cls, flags, values), **kwargs)

        params = [f.param for f in flags] + list(extra)
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        return command

    return wrap


def extra_option(name: str, annotation, default, help: str = "", *decls: str) -> inspect.Parameter:
    """A command-line-only option (not a config field: --resume, --onnx ...)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *decls, help=help))


__all__ = ["extra_option", "from_config"]
