"""``--help`` without type tags.

Typer prints a type tag after every parameter (``--json <bool>``, ``QUERY <str>``), which is
noise: a flag takes no value, and an argument's help says what it is. Here flags show nothing
and value options a plain metavar (``--requests INTEGER``, ``--home DIR``); only the root
group names this class, and every command under it inherits the behaviour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from typer import _click as click  # typer's own copy of click: its classes, not click's

#: A value option's metavar by its Python type, where the option declares none.
METAVARS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "datetime": "DATE"}


class _Argument(TyperArgument):
    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None  # the argument's name and help say what it takes


class _Option(TyperOption):
    def display_type_rich(self, ctx: click.Context) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        bare = self.bare_type()
        return METAVARS.get(bare, bare.upper())


def _untagged(params: list[click.Parameter]) -> list[click.Parameter]:
    # typer builds its own parameter objects (no hook for their class); the subclasses
    # change only how help shows a type, nothing about parsing
    for param in params:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif type(param) is TyperOption:
            param.__class__ = _Option
    return params


class UntaggedCommand(TyperCommand):
    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _untagged(super().get_params(ctx))


class UntaggedGroup(TyperGroup):
    """A typer group whose help, and its commands' and sub-groups' help, show no type tags."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _untagged(super().get_params(ctx))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command: Any = super().get_command(ctx, cmd_name)
        if type(command) is TyperCommand:
            command.__class__ = UntaggedCommand
        elif type(command) is TyperGroup:
            command.__class__ = UntaggedGroup
        return command  # type: ignore[no-any-return]
