"""The web console: server-rendered pages under ``/console`` over the same library calls as the
REST API (design: ``docs/console.md``).

``create_console(manager, tokens, metrics)`` is what ``serving.app.create_app(console=...)``
mounts; the CLI passes it, so ``serving`` never imports this package.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from gcn_rag.serving.auth import TokenStore
    from gcn_rag.serving.manager import EndpointManager
    from gcn_rag.serving.metrics import Metrics
    from gcn_rag.settings import Settings


def create_console(
    manager: EndpointManager,
    tokens: TokenStore | None,
    metrics: Metrics,
    settings: Settings | None = None,
) -> Starlette:
    """The console's ASGI app; ``tokens=None`` (no auth, loopback only) signs in anonymously.
    Without ``settings`` (the workspace), the Models page and the Ask page's dossiers say so."""
    from gcn_rag.console.app import build

    return build(manager, tokens, metrics, settings)


def console_for(settings: Settings) -> Any:
    """The factory ``serving.app.create_app(console=...)`` takes, over ``settings``."""
    return functools.partial(create_console, settings=settings)
