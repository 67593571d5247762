"""``gcn-rag endpoint test | loadtest | monitor``: test, load-test and watch an endpoint."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from gcn_rag.cli.common import HomeOption, catalog_for, friendly, make_console, settings_for
from gcn_rag.cli.serving import ENDPOINT, TokenOption, UrlOption, token_for

if TYPE_CHECKING:
    from rich.console import Console

    from gcn_rag.ops.loadtest import Outcome, Summary
    from gcn_rag.settings import Settings

QuestionsOption = typer.Option(
    None,
    "--questions",
    help="JSONL with a 'question' field, or one question per line "
    "(default: the lab's rag_test_questions).",
)


def questions_from(path: Path | None, settings: Settings) -> list[str]:
    """The questions of ``path``, or the lab's ten test questions."""
    from gcn_rag.corpus.lab_tables import TEST_QUESTIONS
    from gcn_rag.errors import BadInputError

    if path is None:
        catalog = catalog_for(settings)
        if catalog.exists("rag_test_questions"):
            return [str(q) for q in catalog.read("rag_test_questions")["question"].to_pylist()]
        return [question for question, _, _ in TEST_QUESTIONS]
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read {path} ({exc}).") from exc
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        if line.startswith("{"):
            try:
                question = json.loads(line).get("question")
            except (ValueError, AttributeError):
                question = None
            if not isinstance(question, str) or not question:
                raise BadInputError(f"{path}:{number}: no 'question' string in this line.")
            questions.append(question)
        else:
            questions.append(line)
    if not questions:
        raise BadInputError(f"{path} holds no questions.")
    return questions


def _write(settings: Settings, table: str, rows: list[dict[str, Any]], what: str) -> str:
    from gcn_rag.ops.loadtest import results_table

    catalog = catalog_for(settings)
    name = catalog.name(table)
    catalog.append(name, results_table(rows))
    return f"{len(rows)} {what} row(s) appended to {name}"


def _summary_rows(summaries: list[Summary]) -> list[dict[str, Any]]:
    return [
        {
            "concurrency": s.concurrency,
            "requests": s.requests,
            "ok": s.successes,
            "success": f"{s.success_rate:.1%}",
            "req/s": round(s.throughput, 1),
            "mean ms": round(s.latency_mean, 1),
            "p50": round(s.latency_p50, 1),
            "p95": round(s.latency_p95, 1),
            "p99": round(s.latency_p99, 1),
            "max": round(s.latency_max, 1),
            "errors": ", ".join(f"{k}: {v}" for k, v in s.errors.items()) or "-",
        }
        for s in summaries
    ]


def endpoint_test(
    endpoint: str = typer.Argument(ENDPOINT, help="Endpoint name."),
    questions_file: Path | None = QuestionsOption,
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per question."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
    home: Path | None = HomeOption,
) -> None:
    """Ask the test questions one by one; results into rag_endpoint_test_results."""
    _endpoint_test(endpoint, questions_file, timeout, url, token, home)


@friendly
def _endpoint_test(
    endpoint: str,
    questions_file: Path | None,
    timeout: float,
    url: str | None,
    token: str | None,
    home: Path | None,
) -> None:
    from rich.markup import escape

    from gcn_rag.cli.common import print_rows
    from gcn_rag.ops.loadtest import invocation_url, new_run, result_rows, run_test, summarize
    from gcn_rag.serving.client import DEFAULT_URL

    settings = settings_for(home)
    console = make_console()
    questions = questions_from(questions_file, settings)
    target = invocation_url(url or DEFAULT_URL, endpoint)
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
    outcomes = run_test(target, token_for(token, home), questions, timeout, on_each=show)
    summary = summarize(outcomes, 1, time.perf_counter() - started)
    print_rows(console, "Summary", [_test_summary(summary)])
    rows = result_rows(run_id, run_time, endpoint, 1, outcomes)
    console.print(_write(settings, "rag_endpoint_test_results", rows, "test"))
    if summary.successes < summary.requests:
        raise typer.Exit(1)


def _test_summary(s: Summary) -> dict[str, Any]:
    return {
        "questions": s.requests,
        "successes": s.successes,
        "errors": s.requests - s.successes,
        "min ms": round(s.latency_min, 1),
        "mean ms": round(s.latency_mean, 1),
        "median ms": round(s.latency_p50, 1),
        "p95 ms": round(s.latency_p95, 1),
        "max ms": round(s.latency_max, 1),
    }


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
    home: Path | None = HomeOption,
) -> None:
    """Closed-loop load test per concurrency level; rows, PNG plots and an HTML report."""
    _loadtest(
        endpoint,
        concurrency,
        requests,
        duration,
        questions_file,
        timeout,
        allow_remote,
        url,
        token,
        as_json,
        home,
    )


@friendly
def _loadtest(
    endpoint: str,
    concurrency: str,
    requests: int | None,
    duration: str | None,
    questions_file: Path | None,
    timeout: float,
    allow_remote: bool,
    url: str | None,
    token: str | None,
    as_json: bool,
    home: Path | None,
) -> None:
    import dataclasses
    import platform

    from gcn_rag.cli.common import print_rows
    from gcn_rag.errors import BadInputError
    from gcn_rag.ops.loadtest import (
        MAX_REQUESTS,
        check_target,
        invocation_url,
        new_run,
        parse_duration,
        parse_levels,
        result_rows,
        summarize,
    )
    from gcn_rag.ops.report import loadtest_html, loadtest_png
    from gcn_rag.serving.client import DEFAULT_URL

    settings = settings_for(home)
    console = make_console(stderr=as_json)
    levels = parse_levels(concurrency)
    if requests is not None and duration is not None:
        raise BadInputError("Give --requests or --duration, not both.")
    seconds = parse_duration(duration) if duration is not None else None
    count = None if seconds is not None else (requests or 100)
    if count is not None and not 1 <= count <= MAX_REQUESTS:
        raise BadInputError(f"--requests must be 1..{MAX_REQUESTS:,}.")
    base = url or DEFAULT_URL
    check_target(base, allow_remote)
    target = invocation_url(base, endpoint)
    questions = questions_from(questions_file, settings)
    bearer = token_for(token, home)
    run_id, run_time = new_run()
    mode = f"{count} requests" if count is not None else f"{seconds:g} s"
    console.print(f"Load test {run_id}: {target}, closed loop, levels {levels}, {mode} each.")
    summaries, rows = [], []
    for level in levels:
        outcomes, wall = _level_with_progress(
            console, target, bearer, questions, level, count, seconds, timeout
        )
        summaries.append(summarize(outcomes, level, wall))
        rows += result_rows(run_id, run_time, endpoint, level, outcomes)
    print_rows(console, f"Load test {run_id} (closed loop)", _summary_rows(summaries))
    console.print(_write(settings, "rag_endpoint_load_test_results", rows, "request"))
    directory = settings.home / "reports" / f"loadtest-{run_id}"
    directory.mkdir(parents=True, exist_ok=True)
    title = f"Load test of {endpoint}, {run_time:%Y-%m-%d %H:%M} UTC"
    png = loadtest_png(summaries, directory / "loadtest.png", title)
    facts = {
        "endpoint": target,
        "run id": run_id,
        "mode": f"closed loop, {mode} per level",
        "questions": f"{len(questions)} (cycled)",
        "client machine": f"{platform.machine()}, {platform.platform()}",
    }
    page = loadtest_html(summaries, png, directory / "report.html", title, facts)
    console.print(f"Report: {page}\nPlot:   {png}")
    if as_json:
        for summary in summaries:
            sys.stdout.write(json.dumps(dataclasses.asdict(summary)) + "\n")


def _level_with_progress(
    console: Console,
    target: str,
    bearer: str | None,
    questions: list[str],
    level: int,
    count: int | None,
    seconds: float | None,
    timeout: float,
) -> tuple[list[Outcome], float]:
    """One concurrency level with a live bar: done / total (or time), ok, failed, req/s."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gcn_rag.ops.loadtest import run_level

    tally = {"ok": 0, "failed": 0}
    started = time.monotonic()
    with Progress(
        TextColumn(f"c={level:<4}"),
        BarColumn(),
        MofNCompleteColumn() if count is not None else TextColumn("{task.completed:.0f} s"),
        TextColumn("{task.fields[status]}"),
        console=console,
    ) as progress:
        task = progress.add_task("", total=count or seconds, status="")

        def tick(o: Outcome) -> None:
            tally["ok" if o.status == "success" else "failed"] += 1
            done, elapsed = tally["ok"] + tally["failed"], time.monotonic() - started
            progress.update(
                task,
                completed=done if count is not None else min(elapsed, seconds or 0.0),
                status=f"{tally['ok']} ok, {tally['failed']} failed, "
                f"{done / max(elapsed, 1e-9):.1f} req/s",
            )

        return asyncio.run(
            run_level(
                target,
                bearer,
                questions,
                level,
                requests=count,
                duration_s=seconds,
                timeout_s=timeout,
                on_each=tick,
            )
        )


def monitor(
    endpoint: str | None = typer.Argument(None, help="Only this endpoint (default: all)."),
    since: str | None = typer.Option(
        "1h", "--since", help="Window: 30m, 2h, 7d or an ISO date/time (UTC)."
    ),
    bucket: str = typer.Option("1m", "--bucket", help="Bucket size: 10s, 1m, 5m, 1h."),
    table: str = typer.Option(
        "rag_inference_payload", "--table", help="The payload table (catalog.schema.name)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print buckets as JSON lines."),
    home: Path | None = HomeOption,
) -> None:
    """Requests, success rate and latency per served entity over time, from the payload table."""
    _monitor(endpoint, since, bucket, table, as_json, home)


@friendly
def _monitor(
    endpoint: str | None,
    since: str | None,
    bucket: str,
    table: str,
    as_json: bool,
    home: Path | None,
) -> None:
    import dataclasses
    from datetime import UTC, datetime

    from gcn_rag.cli.serving import _since_ms
    from gcn_rag.errors import BadInputError
    from gcn_rag.ops.monitor import buckets, sparkline
    from gcn_rag.ops.report import monitor_png

    units = {"s": 1, "m": 60, "h": 3600}
    if bucket[-1:] not in units or not bucket[:-1].isdigit() or int(bucket[:-1]) < 1:
        raise BadInputError(f"--bucket takes 10s, 1m, 5m or 1h; got {bucket!r}.")
    bucket_s = int(bucket[:-1]) * units[bucket[-1]]
    settings = settings_for(home)
    found = buckets(
        catalog_for(settings),
        table,
        endpoint=endpoint,
        since_ms=_since_ms(since) if since else None,
        bucket_s=bucket_s,
    )
    if as_json:
        for b in found:
            sys.stdout.write(json.dumps(dataclasses.asdict(b), default=str) + "\n")
        return
    console = make_console()
    if not found:
        console.print(f"No requests in {table} for that window.")
        return
    _print_buckets(console, found)
    directory = settings.home / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    title = f"{endpoint or 'all endpoints'}: {bucket} buckets"
    png = monitor_png(found, directory / f"monitor-{stamp}.png", title)
    for entity in sorted({b.served_entity for b in found}):
        mine = [b for b in found if b.served_entity == entity]
        console.print(
            f"{entity:>28}  requests {sparkline([float(b.requests) for b in mine])}  "
            f"p95 {sparkline([b.latency_p95 for b in mine])}"
        )
    console.print(f"Plot: {png}")


def _print_buckets(console: Console, found: list[Any]) -> None:
    from gcn_rag.cli.common import print_rows

    print_rows(
        console,
        "Per served entity and bucket (latency = time in the model, successful requests)",
        [
            {
                "bucket (UTC)": f"{b.start:%Y-%m-%d %H:%M:%S}",
                "served entity": b.served_entity,
                "requests": b.requests,
                "success": f"{b.success_rate:.1%}",
                "p50 ms": round(b.latency_p50, 1),
                "p95 ms": round(b.latency_p95, 1),
                "p99 ms": round(b.latency_p99, 1),
            }
            for b in found
        ],
    )
