"""The Ray cluster gcn-rag's ``--engine ray`` runs on: a private local one, or one at an address.

Shared by the index build (:mod:`gcn_rag.search.distributed`) and serving
(:mod:`gcn_rag.serving.ray_engine`). Without an address, :class:`RayCluster` starts a private
Ray on this machine, stopped by :meth:`RayCluster.close`; with one, it connects to that
cluster and only disconnects.

A cluster on loopback stays on loopback. Ray 2.60 by default swaps 127.0.0.1 for the
machine's address and has its GCS, raylets and agents listen on every interface; with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (read by Ray at import, so also set on the imported
module) every Ray process started here, or by a driver of a loopback cluster, listens on
127.0.0.1 only. Ray's temporary files go where ``RAY_TMPDIR`` says (Ray reads it itself).

Ray is an optional extra (``pip install 'gcn-rag[ray]'``), imported only on first use.
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import Any

from gcn_rag.errors import BadInputError, NotFoundError

RAY_EXTRA = "pip install 'gcn-rag[ray]'"
ENGINES = ("local", "ray")  # gcn-rag index/serve --engine
LOOPBACK = "127.0.0.1"
_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": every Ray server on loopback


def import_ray(*parts: str) -> Any:
    """The ``ray`` module (and its submodules ``parts``, e.g. ``"data"``, ``"serve"``), or an
    error that says how to install them."""
    import importlib

    try:
        ray = importlib.import_module("ray")
        for part in parts:
            importlib.import_module(f"ray.{part}")
    except ImportError as exc:
        raise NotFoundError(
            f"--engine ray needs Ray, an optional extra; install it with `{RAY_EXTRA}`."
        ) from exc
    return ray


def uses_ray(engine: str, address: str | None) -> bool:
    """Whether ``--engine`` names Ray; 400-style errors for an unknown engine, or an
    ``--address`` without Ray."""
    if engine not in ENGINES:
        raise BadInputError(f"Unknown engine {engine!r}; use one of: {', '.join(ENGINES)}.")
    if address is not None and engine != "ray":
        raise BadInputError("--address names a Ray cluster; use it with --engine ray.")
    return engine == "ray"


def on_loopback(address: str | None) -> bool:
    """Whether ``address`` (``HOST:PORT``; None: a private local cluster) is this machine's
    loopback, where every Ray process must stay."""
    if address is None:
        return True
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


class RayCluster:
    """A connection to Ray: a private local cluster (``address`` None, ``num_cpus`` logical
    CPUs, default this machine's) or the cluster at ``address``. Use as a context manager,
    or call :meth:`close`."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._ray: Any = None  # the module, once connected
        self._owns_connection = False

    def connect(self, *parts: str) -> Any:
        """Start or join the cluster (once) and return the ``ray`` module."""
        if self._ray is not None:
            return self._ray
        loopback = on_loopback(self.address)
        if loopback:
            os.environ[_LOCAL_ONLY] = "0"  # before Ray is imported, for this process and its
        ray = import_ray(*parts)  # children (raylet, workers, agents)
        if loopback:
            import ray._private.ray_constants as constants

            constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before
        if not ray.is_initialized():  # a driver that already runs Ray keeps its connection
            quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if self.address is None:
                cpus = self.num_cpus or os.cpu_count() or 1
                ray.init(
                    address="local",
                    _node_ip_address=LOOPBACK,
                    num_cpus=cpus,
                    include_dashboard=False,
                    **quiet,
                )
            else:
                ray.init(address=self.address, **quiet)
            self._owns_connection = True
        self._ray = ray
        return ray

    def close(self) -> None:
        """Stop the private cluster (or disconnect from ``address``)."""
        if self._ray is not None and self._owns_connection:
            self._ray.shutdown()
        self._ray, self._owns_connection = None, False

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
