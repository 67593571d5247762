"""The ``gcn-rag`` command: thin typer commands over the library, grouped like it.

Commands parse ``--home`` once into ``Settings``, call library functions and print what they
return. Heavy modules are imported inside commands, so ``gcn-rag --help`` stays instant.
"""

from __future__ import annotations

import typer

from gcn_rag.cli import answer, corpus, ops, serving, up
from gcn_rag.cli.help import UntaggedGroup
from gcn_rag.cli.model import model_app

app = typer.Typer(
    name="gcn-rag",
    cls=UntaggedGroup,
    help=(
        "A retrieval-augmented assistant over the NASA GCN Circulars: ingest, index, answer, "
        "register and serve - locally. All state lives in one workspace directory "
        "(GCN_RAG_HOME, default ~/.gcn-rag)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(corpus.ingest)
app.command()(corpus.chunk)
app.command()(corpus.sql)
app.command()(corpus.tables)
app.command()(answer.index)
app.command()(answer.ask)
app.command()(answer.event)
app.command()(answer.predict)
app.command(name="eval")(answer.evaluate)
app.command()(up.up)
app.command()(serving.serve)
app.command()(serving.logs)
app.command()(ops.loadtest)
app.command()(ops.monitor)
app.command()(ops.feedback)
app.add_typer(model_app, name="model")
app.add_typer(serving.tokens_app, name="tokens")
serving.endpoints_app.command("test")(ops.endpoint_test)
app.add_typer(serving.endpoints_app, name="endpoints")


def main() -> None:
    app()
