"""``Services``: what the tools of one app share, built once per app from its ``Settings``.

Every member is built on first use (``cached_property``), so an app that only reranks never opens
the jobs database or Chroma, and a test can hand in ready-made members (``Services(settings,
reranker=fake)``). Parts add their own members here, one cached property each (a job manager, a
Chroma document store...), importing their modules inside the property so that importing the
server stays cheap.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any

from adaptrank.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from adaptrank.core.docstore import DocStore
    from adaptrank.core.engine import Reranker
    from adaptrank.core.modelspec import ModelAccess
    from adaptrank.core.modelstore import ModelStore
    from adaptrank.server.jobs import JobManager
    from adaptrank.server.metrics import Metrics
    from adaptrank.training.dataset import DatasetStore

log = logging.getLogger(__name__)


class Services:
    """The shared state behind one server: settings, the model store and the one ``Reranker``."""

    def __init__(self, settings: Settings | None = None, **members: Any) -> None:
        self.settings = settings or get_settings()
        # Pre-built members (tests, embedding apps) take the place of the lazy ones.
        for name, value in members.items():
            if not isinstance(getattr(type(self), name, None), cached_property):
                raise TypeError(f"Services has no member {name!r}")
            self.__dict__[name] = value

    @cached_property
    def store(self) -> ModelStore:
        from adaptrank.core.modelstore import ModelStore

        return ModelStore(self.settings.models_dir)

    @cached_property
    def model_access(self) -> ModelAccess:
        """What a request may name as a model (store models, built-ins, folders inside the allowed
        roots, hub ids only when the operator allows them); every tool and route applies it."""
        from adaptrank.core.modelspec import ModelAccess

        return ModelAccess(self.settings, self.store)

    @cached_property
    def reranker(self) -> Reranker:
        """The one scoring entry point; the tools, the HTTP route and the agent all call it. The
        models a request names pass ``model_access``."""
        from adaptrank.core.engine import Reranker

        return Reranker(settings=self.settings, store=self.store, access=self.model_access, events=self.metrics)

    @cached_property
    def metrics(self) -> Metrics:
        """This app's Prometheus counters (``GET /metrics``); the reranker reports its events here."""
        from adaptrank.server.metrics import Metrics

        return Metrics(self)

    @cached_property
    def docstore(self) -> DocStore:
        """The Chroma document store (embedded, or the server at ``settings.chroma_url``)."""
        from adaptrank.core.docstore import DocStore

        return DocStore(self.settings)

    @cached_property
    def jobs(self) -> JobManager:
        """Background jobs (generation, fine-tuning) recorded in ``settings.jobs_db``."""
        from adaptrank.server.jobs import JobManager

        return JobManager(self.settings)

    @cached_property
    def datasets(self) -> DatasetStore:
        """Generated training datasets under ``settings.datasets_dir``."""
        from adaptrank.training.dataset import DatasetStore

        return DatasetStore(self.settings)

    def built(self) -> dict[str, Any]:
        """The members that exist so far (lazy ones appear once used)."""
        return {
            name: self.__dict__[name]
            for name, attr in vars(type(self)).items()
            if isinstance(attr, cached_property) and name in self.__dict__
        }

    def close(self) -> None:
        """Release what was built (batcher threads, database handles); safe to call twice."""
        for name, member in self.built().items():
            close = getattr(member, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing %s failed", name)
