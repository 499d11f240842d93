"""Parameter coercion without pydantic for the CLI's plain option types.

typer 0.29 coerces each parameter value (bar a flag's bool) through a pydantic ``TypeAdapter``,
built the first time the parameter is processed, even when the value is ``None`` (an option not
given). The root ``--home`` option alone therefore imported pydantic on every command: ~110 ms
of imports plus ~15 ms to build the first adapter, more than the rest of ``layers credits
balance``. `install` gives each parameter a stand-in that returns exactly what typer would for
the values a CLI mostly sees (nothing, a default of the right type, a plain string, digits, an
enum choice, a path) and hands every other value, and every error, to typer's own coercion,
built on first need. tests/test_cli_startup.py checks that both give the same results.

This reaches into typer internals (``_TyperParameter._runtime_param``, `RuntimeParam.coerce`,
``typer._param_types``), which is why typer is pinned below 0.30.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typer import _param_types
from typer.core import _TyperParameter

if TYPE_CHECKING:
    from typer._click import Command, Context
    from typer._coercion import RuntimeParam, TypeDescriptor

_SLOW = object()  # "not a case handled here": typer's own coercion decides
_INT = re.compile(r"-?[0-9]{1,18}")


def _fast(desc: TypeDescriptor, value: Any, param: _TyperParameter, ctx: Context) -> Any:
    """What typer's coercion returns for ``value``, or `_SLOW` when this cannot tell cheaply."""
    annotation, info = desc.annotation, desc.parameter_info
    if desc.file_annotation is not None or info.parser is not None:
        return _SLOW
    if annotation is str:
        return value if type(value) is str else _SLOW
    if annotation is int:
        if info.min is not None or info.max is not None or info.clamp:
            return _SLOW
        if type(value) is int:
            return value
        if type(value) is str and _INT.fullmatch(value):
            return int(value)
        return _SLOW
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _param_types.coerce_cli_choice(
            value, choices=list(annotation), case_sensitive=info.case_sensitive, ctx=ctx
        )
    if _param_types.routes_to_path(annotation, info) and type(value) is str:
        path_type = info.path_type
        if path_type is None and isinstance(annotation, type) and issubclass(annotation, Path):
            path_type = annotation
        if path_type is Path:
            value = Path(value)  # what pydantic's TypeAdapter(Path) makes of a str
        elif path_type not in (None, str, bytes):
            return _SLOW
        return _param_types.coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)
    return _SLOW


class LazyCoercion:
    """Stands in for typer's `RuntimeParam` of one parameter until pydantic is really needed."""

    def __init__(self, descriptor: TypeDescriptor) -> None:
        self.descriptor = descriptor
        self._typer: RuntimeParam | None = None

    def coerce(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:  # typer's `RuntimeParam.coerce` answers None without its adapter
            return () if multi else None
        if not multi:
            try:
                result = _fast(self.descriptor, value, param, ctx)
            except Exception:  # let typer raise its own error, with its own message
                result = _SLOW
            if result is not _SLOW:
                return result
        return self.typer_coercion().coerce(value, param=param, ctx=ctx)

    def typer_coercion(self) -> RuntimeParam:
        """typer's own coercion for this parameter (builds the pydantic adapter)."""
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(self.descriptor)
        return self._typer


def _lazy(param: Any) -> None:
    if isinstance(param, _TyperParameter) and param._runtime_param is None:
        param._runtime_param = LazyCoercion(param.type_descriptor)  # type: ignore[assignment]


def install(command: Command) -> None:
    """Give every typer parameter of ``command`` and its subcommands a `LazyCoercion`.

    That includes the ``--help`` option, which click makes (once) while parsing.
    """
    for param in command.params:
        _lazy(param)
    make_help_option = command.get_help_option

    def get_help_option(ctx: Context) -> Any:
        option = make_help_option(ctx)
        _lazy(option)
        return option

    command.get_help_option = get_help_option  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        install(sub)
