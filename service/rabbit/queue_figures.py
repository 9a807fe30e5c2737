"""RabbitMQ's side of a queue: how many messages wait in it, in its delay queue and in its dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq.common import dq_name, xq_name

from service.rabbit.link import RabbitLink, lanes_of


@dataclass(frozen=True)
class Depth:
    """Ready messages only: those a worker has prefetched (or holds until their delay is up) are not counted."""

    waiting: int  #: in the queue itself (and its priority lanes, with quorum queues)
    delayed: int  #: in `<queue>.DQ`
    dead: int  #: in `<queue>.XQ`, the dead-letter queue


def depth(link: RabbitLink, queue: str) -> Depth:
    """Read with passive declares, which never create a queue; a queue that does not exist yet reads as empty."""

    def read(link: RabbitLink) -> Depth:
        waiting = sum(link.message_count(lane) for lane in lanes_of(link.broker, queue))
        return Depth(waiting, link.message_count(dq_name(queue)), link.message_count(xq_name(queue)))

    return link.run(read)


def purge(link: RabbitLink, queue: str) -> int:
    """Empties the queue (its lanes too) and its delay queue (not the dead letters); returns how many messages went."""

    def empty(link: RabbitLink) -> int:
        link.ensure_queue(queue)
        channel = link.channel()
        removed = 0
        for name in (*lanes_of(link.broker, queue), dq_name(queue)):
            removed += int(channel.queue_purge(name).method.message_count)
        return removed

    return link.run(empty)
