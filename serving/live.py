"""The served model, following the ``current`` link that training and ``kgrec retrain`` publish.

A long-running server (``kgrec serve``) loads the artifact once, then checks where the link points
(one ``realpath`` per request, at most every ``check_s`` seconds). When a new version is published
it loads it beside the old one and swaps; requests in flight finish on the model they started
with. A version that fails to load is logged and skipped, and the old model keeps serving.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from .recommender import Recommender

logger = logging.getLogger(__name__)


class LiveModel:
    """The :class:`Recommender` for the artifact that ``path`` (an artifact, or a link to one)
    names now.

    Raises:
        FileNotFoundError: from the constructor, when ``path`` holds no model artifact.
    """

    def __init__(self, path: str | Path, check_s: float = 1.0) -> None:
        self.path = Path(path)
        self.check_s = check_s
        self._target = os.path.realpath(self.path)
        self._model = Recommender.load(self.path)
        self._failed: str | None = None  # a target that did not load: retried only once the link moves on
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def get(self) -> Recommender:
        """The model to answer this request with (a newly published version once it has loaded)."""
        now = time.monotonic()
        if now - self._checked >= self.check_s:
            self._checked = now
            target = os.path.realpath(self.path)
            if target not in (self._target, self._failed):
                self._reload(target)
        return self._model

    def _reload(self, target: str) -> None:
        with self._lock:  # one loader; the other requests keep the model they have
            if target in (self._target, self._failed):
                return
            try:
                model = Recommender.load(target)
            except Exception:  # a broken artifact must not take the service down
                logger.exception("the model published at %s (%s) did not load; still serving %s",
                                 self.path, target, self._model.version)
                self._failed = target
                return
            logger.info("now serving %s (was %s)", model.version, self._model.version)
            self._model, self._target, self._failed = model, target, None
