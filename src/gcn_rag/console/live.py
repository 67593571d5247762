"""What the endpoint page refreshes without reloading, and the list's requests in the last hour.

:meth:`Live.view` gathers one endpoint's state (ready, config update, the pending config and
each served entity's state: loaded, scaled to zero, starting) and its charts over a window;
the page renders it in place and ``static/live.js`` fetches it again every few seconds from
``GET /console/endpoints/{name}/live``. The numbers come from the inference table
(:mod:`gcn_rag.console.payloads`) and the live counters (:mod:`gcn_rag.console.timeline`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from gcn_rag.console.charts import Chart, charts
from gcn_rag.console.pages import EndpointView, endpoint_view
from gcn_rag.console.payloads import Payloads, Requests
from gcn_rag.console.series import WINDOWS, Window, from_table, from_ticks
from gcn_rag.console.timeline import Timeline

if TYPE_CHECKING:
    from gcn_rag.serving.manager import EndpointManager

HOUR_MS = 3_600_000


@dataclasses.dataclass(frozen=True)
class LiveView:
    """One endpoint's state and charts, as the page (and its refresh) shows them."""

    endpoint: EndpointView
    pending_version: str
    last_log: str
    window: Window
    windows: tuple[Window, ...]
    charts: tuple[Chart, ...]
    backlog: int | None  # rows waiting for Delta now (None: no capture)

    @property
    def updating(self) -> bool:
        return self.endpoint.config_update == "IN_PROGRESS"


class Live:
    """The live views over one server's manager, its counters and its payload tables."""

    def __init__(self, manager: EndpointManager, timeline: Timeline) -> None:
        self.manager = manager
        self.timeline = timeline
        self.payloads = Payloads()

    def view(self, name: str, w: Window) -> LiveView:
        """``name``'s state and charts over ``w`` (reads Delta: call off the event loop)."""
        api = self.manager.get(name)
        self.timeline.sample()  # so a request answered a moment ago is counted
        now = int(time.time() * 1000)
        start = now - w.seconds * 1000
        ticks = self.timeline.since(start)
        requests = self._captured(name)
        if requests is None:
            series = from_ticks(name, ticks, start, w)
        else:
            series = from_table(requests, ticks, start, w)
        capture = self.manager.capture
        backlog = int(capture.stats()["backlog_rows"]) if capture is not None else None
        pending = api.get("pending_config") or {}
        logs = self.manager.logs(name).splitlines()
        return LiveView(
            endpoint=endpoint_view(api),
            pending_version=str(pending.get("config_version", "")),
            last_log=logs[-1] if logs else "",
            window=w,
            windows=WINDOWS,
            charts=charts(series, w, backlog),
            backlog=backlog,
        )

    def last_hour(self) -> dict[str, int]:
        """Requests of each endpoint in the last hour (the inference table's rows when it
        captures, else the live counters since the server started)."""
        since = int(time.time() * 1000) - HOUR_MS
        self.timeline.sample()
        ticks = self.timeline.since(since)
        counts = {}
        for endpoint in self.manager.list():
            name = str(endpoint["name"])
            requests = self._captured(name)
            if requests is None:
                counts[name] = sum(t.counted[name][0] for t in ticks if name in t.counted)
            else:
                counts[name] = int((requests.at_ms >= since).sum())
        return counts

    def _captured(self, name: str) -> Requests | None:
        """``name``'s captured requests (None: it does not capture)."""
        import numpy as np

        target = self.manager.capture_target(name)
        if target is None or self.manager.capture is None:
            return None
        found = self.payloads.requests(self.manager.capture.catalog, target.table, name)
        if found is None:  # captures, but nothing has reached its table yet
            empty = np.zeros(0, dtype=np.int64)
            return Requests(empty, empty, empty)
        return found
