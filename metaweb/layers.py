"""The in-memory channel layer of ``make run`` (no Redis), made for many sockets on one run.

channels' ``InMemoryChannelLayer`` scans every channel for expired messages on each
``receive`` and ``group_send``, and ``group_send`` starts one task and makes one deep
copy per member. With n sockets watching a run, one event costs O(n^2) scanning on
the server's loop, which in ``make run`` also shares the GIL with the training thread.
Here expired messages are cleaned at most once a second, and a group message is copied
once and put on every member's queue directly. Members receive the same dict: the
consumers only relay it (``apps/experiments/consumers.py``), never change it.
"""

from __future__ import annotations

import asyncio
import math
import time
from copy import deepcopy
from typing import Any

from channels.layers import InMemoryChannelLayer

#: Seconds between two scans for expired messages.
CLEAN_EVERY_SECONDS = 1.0


class FanoutInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cleaned_at = -math.inf

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at < CLEAN_EVERY_SECONDS:
            return
        self._cleaned_at = now
        super()._clean_expired()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        members = list(self.groups.get(group, ()))
        if not members:
            return
        shared = deepcopy(message)
        expires = time.time() + self.expiry
        for channel in members:
            queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
            try:
                queue.put_nowait((expires, shared))
            except asyncio.QueueFull:  # like channels: a full channel misses the message
                pass
