"""The served model, following the ``current`` link that training and ``kgrec retrain`` publish.

A long-running server (``kgrec serve``) loads the artifact once, then checks where the link points
(one ``realpath``, at most every ``check_s`` seconds). When a new version is published a background
thread loads it beside the old one and swaps; until then, and while it loads, every request is
answered by the old model at once (two models are in memory for the moment of the swap). A
version that fails to load is logged, the old model keeps serving, and the load is tried again
after ``retry_s`` seconds (a lack of memory can pass) or as soon as the link moves on.

The version being served is held (:func:`gnn.artifact.hold`) so that ``kgrec retrain``'s prune
does not delete it, even when it is not the one ``current`` or the config names.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from gnn.artifact import check_artifact, hold
from kgrec.config import ServingConfig

from .recommender import Recommender

logger = logging.getLogger(__name__)


class LiveModel:
    """The :class:`Recommender` for the artifact that ``path`` (an artifact, or a link to one)
    names now; ``warm_search`` loads its query encoder in the background at once (a new version's
    is always loaded before the swap).

    Raises:
        FileNotFoundError: from the constructor, when ``path`` holds no model artifact.
    """

    def __init__(self, path: str | Path, check_s: float = 1.0, retry_s: float = 300.0,
                 cfg: ServingConfig | None = None, warm_search: bool = False) -> None:
        self.path = Path(path)
        self.check_s, self.retry_s, self.cfg = check_s, retry_s, cfg
        self._target = os.path.realpath(self.path)
        try:  # before it is held: no in-use mark in a directory that is no artifact
            check_artifact(self._target)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}: run `kgrec train` first") from None
        self._held = hold(self._target)
        try:  # the version held, not wherever the link points a moment later
            self._model = Recommender.load(self._target, cfg)
        except BaseException:
            if self._held is not None:
                self._held.close()
            raise
        if warm_search:  # the query encoder loads beside the first requests instead of in the first search
            threading.Thread(target=self._warm_search, args=(self._model,), daemon=True,
                             name="kgrec-search-warm").start()
        self._failed: tuple[str, float, str] | None = None  # a target that did not load, when, and why
        self._checked = time.monotonic()
        self._loading = threading.Lock()
        self._loader: threading.Thread | None = None

    def get(self) -> Recommender:
        """The model to answer this request with; never waits for a load."""
        now = time.monotonic()
        if now - self._checked >= self.check_s:
            self._checked = now
            target = os.path.realpath(self.path)
            if self._wanted(target, now) and self._loading.acquire(blocking=False):
                self._loader = threading.Thread(target=self._load, args=(target,), daemon=True,
                                                name="kgrec-model-reload")
                try:
                    self._loader.start()
                except BaseException:  # no thread (a process at its limit): the next check tries again
                    self._loading.release()
                    raise
        return self._model

    @property
    def reload_error(self) -> str | None:
        """Why the version published last did not load, while the one before serves; else None."""
        failed = self._failed
        if failed is None or failed[0] != os.path.realpath(self.path):  # not rolled back since
            return None
        return f"{failed[0]}: {failed[2]}"

    def wait_for_reload(self, timeout: float | None = None) -> None:
        """Block until a reload started by :meth:`get` has finished (for tests and scripts)."""
        loader = self._loader
        if loader is not None:
            loader.join(timeout)

    @staticmethod
    def _warm_search(model: Recommender) -> None:
        """Load the query encoder before the swap, so the first search does not wait for it; one
        that fails to load fails search requests only, never the new version."""
        if model.text_search is not None:
            try:
                model.text_search.warm()
            except Exception:
                logger.exception("the query encoder of %s did not load; its search requests will fail", model.version)

    def _wanted(self, target: str, now: float) -> bool:
        if target == self._target:
            self._failed = None  # the link moved back to the served version: a failed one named again is tried
            return False
        return self._failed is None or self._failed[0] != target or now - self._failed[1] >= self.retry_s

    def _load(self, target: str) -> None:
        held = None
        try:
            if not self._wanted(target, time.monotonic()):  # a request that saw the link before the last swap
                return
            check_artifact(target)  # before it is held, as at start: no in-use mark in a directory that is no artifact
            held = hold(target)
            model = Recommender.load(target, self.cfg)
            self._warm_search(model)
            if os.path.realpath(self.path) != target:  # the link moved on while this loaded (or back)
                logger.info("%s no longer names %s: not swapped in", self.path, target)
                return
        except Exception as e:  # a broken artifact must not take the service down
            logger.exception("the model published at %s (%s) did not load; still serving %s, retrying in %.0f s",
                             self.path, target, self._model.version, self.retry_s)
            if os.path.realpath(self.path) == target:  # else the link moved on meanwhile: named again, it is tried
                self._failed = (target, time.monotonic(), f"{type(e).__name__}: {e}")
        else:
            logger.info("now serving %s (was %s)", model.version, self._model.version)
            self._model, self._target, self._failed = model, target, None
            held, self._held = self._held, held  # the version served until now is let go below
        finally:
            if held is not None:
                held.close()
            self._loading.release()
