"""The stack's settings with the list-based channels-redis layer that the pub/sub layer
replaced: ``live_latency.py``'s baseline, measured in the same run."""

from tests.e2e.settings import *  # noqa: F403
from tests.e2e.settings import CHANNEL_LAYERS as _LAYERS

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": _LAYERS["default"]["CONFIG"]["hosts"], "capacity": 1500},
    }
}
