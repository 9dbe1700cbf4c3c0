"""make run's in-memory channel layer: one copy and no scan per member."""

from __future__ import annotations

import asyncio

import pytest

from metaweb import layers
from metaweb.layers import FanoutInMemoryChannelLayer


async def _members(layer, group: str, n: int) -> list[str]:
    channels = [await layer.new_channel() for _ in range(n)]
    for channel in channels:
        await layer.group_add(group, channel)
    return channels


async def test_group_send_reaches_every_member_once_with_one_copy():
    layer = FanoutInMemoryChannelLayer()
    channels = await _members(layer, "run-1", 50)
    message = {"type": "run.progress", "run_id": 1, "points": {"loss": [[1, 0.5]]}}
    await layer.group_send("run-1", message)
    received = [await asyncio.wait_for(layer.receive(channel), 1) for channel in channels]
    assert all(got == message for got in received)
    assert all(got is received[0] for got in received)  # one copy, shared
    assert received[0] is not message  # but not the sender's own dict
    message["points"]["loss"].append([2, 0.25])
    assert received[0]["points"] == {"loss": [[1, 0.5]]}
    await layer.group_send("nobody-here", message)  # an empty group: nothing happens


async def test_expired_messages_are_scanned_at_most_once_a_second(monkeypatch):
    layer = FanoutInMemoryChannelLayer()
    channels = await _members(layer, "run-1", 20)
    scans: list[None] = []
    real = layer.__class__.__mro__[1]._clean_expired
    monkeypatch.setattr(
        layer.__class__.__mro__[1], "_clean_expired", lambda self: scans.append(None) or real(self)
    )
    now = [1000.0]
    monkeypatch.setattr(layers.time, "monotonic", lambda: now[0])  # a second lasts as long as the test
    for step in range(5):
        await layer.group_send("run-1", {"type": "run.progress", "step": step})
        for channel in channels:
            await layer.receive(channel)
    assert len(scans) == 1  # not 5 group sends + 100 receives
    now[0] += layers.CLEAN_EVERY_SECONDS
    await layer.group_send("run-1", {"type": "run.progress", "step": 5})
    assert len(scans) == 2


async def test_expired_messages_still_leave(monkeypatch):
    layer = FanoutInMemoryChannelLayer(expiry=0.01)
    channel = (await _members(layer, "run-1", 1))[0]
    await layer.group_send("run-1", {"type": "run.progress"})
    await asyncio.sleep(0.05)
    monkeypatch.setattr(layers, "CLEAN_EVERY_SECONDS", 0.0)
    layer._clean_expired()
    assert channel not in layer.channels and channel not in layer.groups.get("run-1", {})


@pytest.mark.parametrize("capacity", [1])
async def test_a_full_member_misses_the_message_and_the_others_get_it(capacity):
    layer = FanoutInMemoryChannelLayer(capacity=capacity)
    full, other = await _members(layer, "run-1", 2)
    await layer.send(full, {"type": "run.status"})
    await layer.group_send("run-1", {"type": "run.progress"})
    assert (await layer.receive(other))["type"] == "run.progress"
    assert (await layer.receive(full))["type"] == "run.status"
