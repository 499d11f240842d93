"""Everything the CLI prints. The only module that imports rich.

Data (tables, ``--json``, secrets) goes to stdout so it can be piped; notes, warnings and
errors go to stderr. Cell values are rendered as plain `Text`, never as markup, so a project
named ``[red]`` prints as itself.

rich is imported by the functions that draw, not at module level: ``--json``, ``--csv`` and
`plain` output never load it (importing `rich.console` costs ~30 ms of start-up).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import LayersError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

NONE = "–"


def _console(stderr: bool = False) -> Console:
    """A console on the *current* stdout/stderr (test runners swap them).

    Off a terminal, lines are not wrapped at 80 columns: piped output stays greppable.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if tty else int(os.environ.get("COLUMNS") or 200)
    return Console(file=stream, width=width, highlight=False, emoji=False, soft_wrap=False)


def _text(value: Any) -> Text:
    from rich.text import Text

    if isinstance(value, Text):
        return value
    if value is None:
        return Text(NONE, style="dim")
    return Text(str(value))


# -- money and numbers --------------------------------------------------------------------


def usd(value: Decimal | None) -> str:
    """An exact USD amount: at least cents, more digits only when they are there."""
    if value is None:
        return NONE
    value = Decimal(value)
    if value == value.quantize(Decimal("0.01")):
        return f"${value:,.2f}"
    return f"${value.normalize():f}"


def price(value: Decimal | None) -> str:
    """A list price (per 1M tokens or per image): cents, or every digit it has."""
    return usd(value)


def integer(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def percent(value: Decimal) -> str:
    return f"{(Decimal(value) * 100).normalize():f}%"


def styled(text: str, style: str) -> Text:
    from rich.text import Text

    return Text(text, style=style)


# -- structured output --------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def json_out(data: Any) -> None:
    """Pretty JSON on stdout; keys keep the order the command chose (they are stable)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def csv_out(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    right: Sequence[str] = (),
    empty: str | None = None,
) -> None:
    """A simple table; ``right`` names the columns to right-align (numbers)."""
    from rich import box
    from rich.table import Table

    rows = list(rows)
    if not rows and empty:
        note(empty)
        return
    t = Table(
        box=box.SIMPLE_HEAD, title=title, caption=caption, title_justify="left", show_edge=False
    )
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left", overflow="fold")
    for row in rows:
        t.add_row(*(_text(cell) for cell in row))
    _console().print(t)


def fields(pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
    """A two-column ``name  value`` listing for `show`-style commands."""
    from rich.table import Table

    t = Table(box=None, show_header=False, title=title, title_justify="left", pad_edge=False)
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for name, value in pairs:
        t.add_row(name, _text(value))
    _console().print(t)


def line(text: str | Text = "", style: str | None = None) -> None:
    """One line of result on stdout."""
    _console().print(_text(text) if text else "", style=style, soft_wrap=True)


def plain(text: str) -> None:
    """Exact text on stdout (scripts, secrets): no styling, no wrapping."""
    sys.stdout.write(text + "\n")


# -- messages (stderr) --------------------------------------------------------------------


def note(text: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text(text, style="dim"), soft_wrap=True)


def success(text: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text(text, style="green"), soft_wrap=True)


def warn(text: str) -> None:
    from rich.text import Text

    _console(stderr=True).print(Text(f"Warning: {text}", style="yellow"), soft_wrap=True)


def error(exc: LayersError | str, hint: str | None = None) -> None:
    """``Error: message`` and, on the next line, what to do about it."""
    from rich.text import Text

    message = exc.message if isinstance(exc, LayersError) else exc
    hint = exc.hint if isinstance(exc, LayersError) else hint
    console = _console(stderr=True)
    console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
    if hint:
        console.print(Text(hint, style="yellow"), soft_wrap=True)
