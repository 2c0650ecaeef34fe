"""The Redis broker transport, with one repair: a worker survives its broker going away.

When the connection to Redis breaks, celery 5.7 collects and then closes the consumer's connection; closing a
channel asks kombu 5.7 to put the messages the worker still holds (running, or waiting for their countdown) back
on the queue. By then the transport has been detached from its connection, so kombu raises AttributeError
('NoneType' object has no attribute 'hostname'), which celery treats as unrecoverable: the worker process exits.
Every worker holding a message dies with a Redis restart (reproduced in tests/faults/test_broker_loss.py).

Skipping that one restore loses nothing here: messages are only wake-up calls, PostgreSQL knows what is due, and
the sweeper re-sends it. Everywhere else (a graceful shutdown with the broker up) held messages are restored as
before. Installed for the `redis`/`rediss` schemes by config/celery.py.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        if self.channel.connection.client is None:
            held = self._delivered
            logger.warning(
                "broker connection already closed: %d held message(s) not put back; the sweeper re-sends due tasks",
                len(held or ()),
            )
            if held is not None:
                held.clear()
            return None
        return super().restore_unacked(client)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
