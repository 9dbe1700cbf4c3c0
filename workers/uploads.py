"""The background uploader: a run's checkpoints go to the store off the training thread.

The engine writes each checkpoint to the worker's scratch folder and calls the
reporter's ``on_checkpoint(step)`` once it is durable there. The reporter hands the
step to :class:`CheckpointUploader`, whose own thread stores the folder
(:func:`apps.runfiles.checkpoints.upload`: files, then the ``latest`` pointer) and
only then calls ``then(step)``, which moves the run's ``checkpoint_step``. The
training loop never waits for the network.

When checkpoints come faster than they upload, only the newest waiting one is
stored: an older one is skipped, as is a folder the engine pruned meanwhile (a
newer one follows). The uploader remembers which step folders it left in the store
and the ``val_loss`` of each one's record, so pruning them by the retention rule
(the best and the newest stay) costs one request and no listing (the first upload
of an attempt lists the store once, and reads the records earlier attempts left).
A failed upload (the store is unreachable) is raised on the training thread at the
next checkpoint, and by :meth:`CheckpointUploader.wait`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from apps.runfiles.checkpoints import Stored, upload
from workers.metalearn.checkpoint_layout import step_dir_name

logger = logging.getLogger(__name__)

__all__ = ["CheckpointUploader"]

Upload = Callable[[int, Path], None]


class CheckpointUploader:
    """Stores run ``run_id``'s checkpoints from ``root`` on a thread of its own."""

    def __init__(self, *, run_id: int, root: Path, store: Upload | None = None):
        self.run_id = run_id
        self.root = root
        self._store = store or self._upload
        self._known: Stored | None = None  # step folders in the store and their metric: listed once
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"run-{run_id}-upload")
        self._lock = threading.Lock()
        self._newest = -1
        self._futures: list[Future] = []
        self.uploaded: list[int] = []

    def submit(self, step: int, then: Callable[[int], None]) -> None:
        """Store checkpoint ``step`` in the background, then call ``then(step)``.
        Raises the error of an earlier upload that failed."""
        self._raise_failed(done_only=True)
        with self._lock:
            self._newest = max(self._newest, step)
        self._futures.append(self._pool.submit(self._store_step, step, then))

    def _upload(self, run_id: int, folder: Path) -> None:
        self._known = upload(run_id, folder, stored=self._known)

    def _store_step(self, step: int, then: Callable[[int], None]) -> None:
        with self._lock:
            if step < self._newest:
                return  # a newer checkpoint is queued: it supersedes this one
        folder = self.root / step_dir_name(step)
        try:
            self._store(self.run_id, folder)
        except FileNotFoundError:
            if folder.exists():
                raise
            logger.info("run %s: checkpoint %s was pruned before its upload", self.run_id, step)
            return
        self.uploaded.append(step)
        then(step)

    def _raise_failed(self, *, done_only: bool) -> None:
        pending = []
        for future in self._futures:
            if done_only and not future.done():
                pending.append(future)
                continue
            future.result()  # raises the upload's error
        self._futures = pending

    def wait(self) -> None:
        """Block until every submitted checkpoint is stored (or skipped); raise the
        first failure."""
        self._raise_failed(done_only=False)

    def close(self) -> None:
        """Finish the uploads in flight and stop the thread; failures are logged
        (:meth:`wait` is where they are raised)."""
        try:
            self.wait()
        except Exception as exc:  # noqa: BLE001 - reported through wait() by the job
            logger.warning("run %s: checkpoint upload failed: %s", self.run_id, exc)
        finally:
            self._pool.shutdown(wait=True)
