"""``gcn-rag endpoints test | loadtest | monitor | feedback``: test, load-test and watch an
endpoint, and read what users said of its answers."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gcn_rag.cli.common import (
    SettingsOption,
    friendly,
    is_piped,
    make_console,
    print_error,
    print_json,
    print_rows,
)
from gcn_rag.cli.serving import TokenOption, UrlOption
from gcn_rag.serving.deploy import ENDPOINT
from gcn_rag.settings import Settings
from gcn_rag.timespan import SINCE_HELP

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.ops.loadtest import LoadTest
    from gcn_rag.ops.results import Outcome
    from gcn_rag.tables import Catalog

QuestionsOption = typer.Option(
    None,
    "--questions",
    help="JSONL with a 'question' field, or one question per line "
    "(default: the lab's rag_test_questions).",
)


@friendly
def endpoint_test(
    endpoint: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    questions_file: Path | None = QuestionsOption,
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per question."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    settings: Settings = SettingsOption,
) -> None:
    """Ask the test questions one by one; results into rag_endpoint_test_results.

    Exits 1 when a question failed.
    """
    from rich.markup import escape

    from gcn_rag.ops.loadtest import invocation_url, read_questions, run_test
    from gcn_rag.ops.results import new_run, no_success, result_rows, save_results, summarize
    from gcn_rag.serving.client import workspace_server
    from gcn_rag.tables import Catalog

    console = make_console()
    catalog = Catalog.from_settings(settings)
    questions = read_questions(questions_file, catalog)
    base, token = workspace_server(settings, url, token)
    target = invocation_url(base, endpoint)
    run_id, run_time = new_run()
    console.print(f"Testing {target} with {len(questions)} question(s) (run {run_id}).")

    def show(o: Outcome) -> None:
        mark = "[green]ok[/]" if o.status == "success" else f"[red]{o.status} {o.status_code}[/]"
        console.print(
            f"{mark} {o.latency_ms:7.1f} ms  {escape(o.question[:60])}\n"
            f"         {escape(o.answer.replace(chr(10), ' ')[:110])}",
            soft_wrap=True,
        )

    started = time.perf_counter()
    outcomes = run_test(target, token, questions, timeout, on_each=show)
    summary = summarize(outcomes, 1, time.perf_counter() - started)
    print_rows(console, "Summary", [summary.test_row()])
    rows = result_rows(run_id, run_time, endpoint, 1, outcomes)
    table = save_results(catalog, "rag_endpoint_test_results", rows)
    console.print(f"{len(rows)} test row(s) appended to {table}")
    if summary.successes < summary.requests:
        failed = summary.requests - summary.successes
        print_error(no_success([summary]) or f"{failed} of {summary.requests} questions failed.")
        raise typer.Exit(1)


@friendly
def loadtest(
    endpoint: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    concurrency: str = typer.Option("1,2,4,8", "--concurrency", help="Levels, e.g. 1,2,4,8."),
    requests: int | None = typer.Option(
        None, "--requests", help="Requests per level (default 100 unless --duration)."
    ),
    duration: str | None = typer.Option(
        None, "--duration", help="Time per level instead of a count: 30s, 2m (max 10m)."
    ),
    questions_file: Path | None = QuestionsOption,
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per request."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a target that is not on this machine."
    ),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    as_json: bool = typer.Option(False, "--json", help="Also print each level as JSON."),
    settings: Settings = SettingsOption,
) -> None:
    """Closed-loop load test per concurrency level; rows, PNG plots and an HTML report.

    Exits 1, with no report, when no request succeeded (the rows are kept).
    """
    from gcn_rag.ops.loadtest import LoadTest, read_questions
    from gcn_rag.serving.client import workspace_server
    from gcn_rag.tables import Catalog

    console = make_console(stderr=as_json)
    catalog = Catalog.from_settings(settings)
    base, token = workspace_server(settings, url, token)
    test = LoadTest(
        base,
        endpoint,
        token,
        read_questions(questions_file, catalog),
        levels=concurrency,
        requests=requests,
        duration=duration,
        timeout_s=timeout,
        allow_remote=allow_remote,
    )
    console.print(
        f"Load test {test.run_id}: {test.target}, closed loop, levels {test.levels}, "
        f"{test.per_level} each."
    )
    for level in test.levels:
        _level_with_progress(console, test, level)
    title = f"Load test {test.run_id} (closed loop)"
    print_rows(console, title, [summary.row() for summary in test.summaries])
    console.print(f"{len(test.rows)} request row(s) appended to {test.save(catalog)}")
    _finish(console, test, settings.reports, as_json)


def _finish(console: Console, test: LoadTest, reports: Path, as_json: bool) -> None:
    """The levels as JSON if asked; then the report, or exit 1 when nothing succeeded."""
    from gcn_rag.ops.report import loadtest_report
    from gcn_rag.ops.results import no_success

    if as_json:
        for summary in test.summaries:
            print_json(dataclasses.asdict(summary))
    failure = no_success(test.summaries)
    if failure is not None:  # nothing was measured: no report to mistake for one
        print_error(f"{failure} No report written.")
        raise typer.Exit(1)
    page, png = loadtest_report(test, reports)
    console.print(f"Report: {page}\nPlot:   {png}")


def _level_with_progress(console: Console, test: LoadTest, level: int) -> None:
    """One concurrency level with a live bar: done / total (or time), ok, failed, req/s."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gcn_rag.ops.loadtest import Tally

    if is_piped(console):  # the bar is for a person: keep it out of the data
        console = make_console(stderr=True)
    count, seconds = test.requests, test.duration_s
    tally = Tally(count, seconds)
    with Progress(
        TextColumn(f"c={level:<4}"),
        BarColumn(),
        MofNCompleteColumn() if count is not None else TextColumn("{task.completed:.0f} s"),
        TextColumn("{task.fields[status]}"),
        console=console,
    ) as progress:
        task = progress.add_task("", total=count or seconds, status="")

        def tick(outcome: Outcome) -> None:
            tally.add(outcome)
            progress.update(task, completed=tally.completed, status=tally.status)

        test.run_level(level, on_each=tick)


@friendly
def monitor(
    endpoint: str | None = typer.Argument(None, help="Only this endpoint (default: all)."),
    since: str | None = typer.Option("1h", "--since", help=SINCE_HELP),
    bucket: str = typer.Option("1m", "--bucket", help="Bucket size: 10s, 1m, 5m, 1h."),
    table: str = typer.Option(
        "rag_inference_payload", "--table", help="The payload table (catalog.schema.name)."
    ),
    ab: bool = typer.Option(
        False, "--ab", help="Compare the endpoint's served entities (and shadows) instead."
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="With --ab: the arm to compare with (default: the busiest)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="JSON lines: buckets and guardrail decisions (or the A/B)."
    ),
    settings: Settings = SettingsOption,
) -> None:
    """Requests, success rate and latency per served entity over time, from the payload table.

    With --ab: each served entity side by side with 95% intervals, and whether it is measured
    worse or better than the reference on each figure.
    """
    from gcn_rag.ops.monitor import buckets, guardrail_decisions, sparkline
    from gcn_rag.ops.report import monitor_report
    from gcn_rag.tables import Catalog
    from gcn_rag.timespan import parse_bucket, since_ms

    bucket_s = parse_bucket(bucket)
    catalog, start = Catalog.from_settings(settings), since_ms(since) if since else None
    if ab or reference is not None:
        _ab(catalog, table, endpoint, start, reference, as_json)
        return
    found = buckets(catalog, table, endpoint=endpoint, since_ms=start, bucket_s=bucket_s)
    decisions = guardrail_decisions(catalog, table, endpoint=endpoint, since_ms=start)
    if as_json:
        for b in found:
            print_json({**dataclasses.asdict(b), "kind": "bucket"})
        for d in decisions:
            print_json({**dataclasses.asdict(d), "kind": "guardrail_decision"})
        return
    console = make_console()
    if not found:
        console.print(f"No requests in {table} for that window.")
        return
    title = "Per served entity and bucket (latency = time in the model, successful requests)"
    print_rows(console, title, [b.row() for b in found])
    png = monitor_report(
        found, settings.reports, f"{endpoint or 'all endpoints'}: {bucket} buckets"
    )
    for entity in sorted({b.served_entity for b in found}):
        mine = [b for b in found if b.served_entity == entity]
        console.print(
            f"{entity:>28}  requests {sparkline([float(b.requests) for b in mine])}  "
            f"p95 {sparkline([b.latency_p95 for b in mine])}"
        )
    print_rows(console, "Guardrail decisions (requests)", [d.row() for d in decisions])
    console.print(f"Plot: {png}")


def _ab(
    catalog: Catalog,
    table: str,
    endpoint: str | None,
    start: int | None,
    reference: str | None,
    as_json: bool,
) -> None:
    """``monitor --ab``: the A/B table, or its JSON lines."""
    from gcn_rag.errors import BadInputError
    from gcn_rag.ops.abtest import ab_test

    if endpoint is None:
        raise BadInputError("--ab compares one endpoint's arms: gcn-rag monitor ENDPOINT --ab")
    test = ab_test(catalog, table, endpoint, since_ms=start, reference=reference)
    if as_json:
        for line in test.lines():
            print_json(line)
        return
    console = make_console()
    if not test.arms:
        console.print(f"No requests of {endpoint} in {table} for that window.")
        return
    title = (
        f"A/B on {endpoint}: each arm with 95% intervals; differences vs {test.reference} "
        "(pp = percentage points)"
    )
    print_rows(console, title, test.rows())


@friendly
def feedback(
    endpoint: str | None = typer.Argument(None, help="Only this endpoint's feedback."),
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP),
    table: str = typer.Option(
        "rag_inference_payload", "--table", help="The payload table the requests are in."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
    settings: Settings = SettingsOption,
) -> None:
    """User feedback (rag_feedback), newest first, with the rated question and answer."""
    from gcn_rag.ops.feedback import rated_answers
    from gcn_rag.tables import Catalog
    from gcn_rag.timespan import since_ms

    catalog = Catalog.from_settings(settings)
    start = since_ms(since) if since is not None else None
    rows = rated_answers(catalog, endpoint, since_ms=start, payload=table)
    if as_json:
        for row in rows:
            print_json(row.to_dict())
        return
    console = make_console()
    if not rows:
        console.print("No feedback yet for that window.")
        return
    shown = [
        {
            "time (UTC)": f"{r.time:%m-%d %H:%M:%S}",
            "rating": r.rating or "",
            "by": r.requester,
            "served entity": r.served_entity or "(not flushed yet)",
            "question": r.question or "",
            "answer": " ".join((r.answer or "").split())[:200],
            "comment": r.comment or "",
        }
        for r in rows
    ]
    print_rows(console, f"{len(rows)} feedback(s) from {catalog.name('rag_feedback')}", shown)
