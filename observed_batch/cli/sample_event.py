"""``observed-batch sample-event``: realistic Lambda batch events, with poison records on request.

    observed-batch sample-event sqs --count 10 --fail-every 5 > event.json

Built with the ``observed_batch.testing`` factories (the shapes Lambda delivers), with payloads the
examples understand: orders for SQS, DynamoDB and Kafka, click events for Kinesis. Kafka events come
from Amazon MSK (``eventSource: aws:kafka`` with the cluster's ``eventSourceArn``) or a self-managed
cluster (``eventSource: SelfManagedKafka``), records grouped by ``topic-partition`` and assigned to a
partition by their key, as Kafka's default partitioner does. ``--fail-every K`` marks
every K-th record as poison (``"fail": true`` in the payload), which the examples' handlers reject.
Identifiers and payloads are deterministic for a given ``--seed``; timestamps end at ``--time``
(default: now), so record ages look like a live queue's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import zlib
from collections.abc import Callable
from typing import Any

import click

from observed_batch import testing
from observed_batch.cli._common import Progress, UsageProblem

__all__ = ["KAFKA_SOURCES", "POISON_KEY", "SOURCES", "build_event", "command"]

#: source -> default queue / stream / table / topic name
SOURCES = {
    "sqs": "orders",
    "sqs-fifo": "orders.fifo",
    "kinesis": "clickstream",
    "dynamodb": "orders",
    "kafka": "orders",
}
#: Where a Kafka event comes from: Amazon MSK or a self-managed cluster.
KAFKA_SOURCES = ("msk", "self-managed")
#: Payload key marking a poison record (``true``); the examples' handlers raise on it.
POISON_KEY = "fail"
MAX_COUNT = 100_000
#: Records of one event lie this many milliseconds apart, the newest at ``time_ms``.
_SPACING_MS = 10
_PROGRESS_EVERY = 1000
_CURRENCIES = ("EUR", "USD", "GBP")
_PAGES = ("/", "/search", "/product/42", "/product/7", "/cart", "/checkout")
_ACTIONS = ("view", "click", "add_to_cart", "checkout")
#: Offset of each partition's first record: a topic that has seen traffic before.
_KAFKA_FIRST_OFFSET = 1000
_MSK_CLUSTER = "orders-cluster"

_Factory = Callable[[int, random.Random, bool, int], dict[str, Any]]


def _order(index: int, rng: random.Random, customer: str, poison: bool) -> dict[str, Any]:
    order: dict[str, Any] = {
        "order_id": f"order-{index + 1:05d}",
        "customer_id": customer,
        "amount": round(rng.uniform(5, 500), 2),
        "currency": rng.choice(_CURRENCIES),
        "items": rng.randint(1, 5),
    }
    if poison:
        order[POISON_KEY] = True
    return order


def _sqs_factory(name: str, seed: int, groups: int | None, received_ms: int) -> _Factory:
    def record(index: int, rng: random.Random, poison: bool, sent_ms: int) -> dict[str, Any]:
        group = f"customer-{index % groups + 1:03d}" if groups else None
        customer = group or f"customer-{rng.randint(1, 50):03d}"
        built = testing.sqs_record(
            index,
            body=_order(index, rng, customer, poison),
            queue=name,
            group_id=group,
            sent_timestamp_ms=sent_ms,
            seed=seed,
        )
        built["attributes"]["ApproximateFirstReceiveTimestamp"] = str(received_ms)
        built["md5OfBody"] = hashlib.md5(built["body"].encode(), usedforsecurity=False).hexdigest()
        return built

    return record


def _kinesis_factory(name: str) -> _Factory:
    def record(index: int, rng: random.Random, poison: bool, sent_ms: int) -> dict[str, Any]:
        user = f"user-{rng.randint(1, 200):04d}"
        click_event: dict[str, Any] = {
            "event_id": f"{rng.getrandbits(64):016x}",
            "user_id": user,
            "page": rng.choice(_PAGES),
            "action": rng.choice(_ACTIONS),
            "timestamp_ms": sent_ms - rng.randint(5, 500),
        }
        if poison:
            click_event[POISON_KEY] = True
        built = testing.kinesis_record(index, data=click_event, stream=name)
        built["kinesis"]["partitionKey"] = user
        built["kinesis"]["approximateArrivalTimestamp"] = sent_ms / 1000.0
        return built

    return record


def _dynamodb_factory(name: str) -> _Factory:
    def record(index: int, rng: random.Random, poison: bool, sent_ms: int) -> dict[str, Any]:
        order = _order(index, rng, f"customer-{rng.randint(1, 50):03d}", poison)
        image: dict[str, Any] = {
            "pk": {"S": order["order_id"]},
            "customer_id": {"S": order["customer_id"]},
            "amount": {"N": str(order["amount"])},
            "currency": {"S": order["currency"]},
            "items": {"N": str(order["items"])},
            "status": {"S": "PLACED"},
        }
        if poison:
            image[POISON_KEY] = {"BOOL": True}
        built = testing.dynamodb_record(index, table=name, new_image=image)
        built["dynamodb"]["Keys"] = {"pk": image["pk"]}
        built["dynamodb"]["ApproximateCreationDateTime"] = sent_ms // 1000
        return built

    return record


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kafka_factory(topic: str, partitions: int) -> _Factory:
    offsets = [_KAFKA_FIRST_OFFSET] * partitions

    def record(index: int, rng: random.Random, poison: bool, sent_ms: int) -> dict[str, Any]:
        customer = f"customer-{rng.randint(1, 50):03d}"
        partition = zlib.crc32(customer.encode()) % partitions  # one key, one partition
        offset, offsets[partition] = offsets[partition], offsets[partition] + 1
        return {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp": sent_ms,
            "timestampType": "CREATE_TIME",
            "key": _b64(customer.encode()),
            "value": _order(index, rng, customer, poison=False),  # encoded once the event order is known
            "headers": [{"event-type": list(b"order")}],
        }

    return record


def _kafka_event(records: list[dict[str, Any]], kafka_source: str, seed: int, fail_every: int | None) -> dict[str, Any]:
    """Records grouped by ``topic-partition``; every K-th record of the event (as Lambda and Powertools
    read it, partition by partition) is poison."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: (r["partition"], r["offset"])):
        grouped.setdefault(f"{record['topic']}-{record['partition']}", []).append(record)
    flattened = [record for batch in grouped.values() for record in batch]
    for position, record in enumerate(flattened, 1):
        if fail_every is not None and position % fail_every == 0:
            record["value"][POISON_KEY] = True
        record["value"] = _b64(json.dumps(record["value"]).encode())
    if kafka_source == "self-managed":
        servers = "kafka-1.internal.example.com:9092,kafka-2.internal.example.com:9092"
        return {"eventSource": "SelfManagedKafka", "bootstrapServers": servers, "records": grouped}
    cluster_id = f"{random.Random(seed).getrandbits(128):032x}"
    cluster = f"cluster/{_MSK_CLUSTER}/{cluster_id[:8]}-{cluster_id[8:12]}-1"
    arn = f"arn:aws:kafka:{testing.REGION}:{testing.ACCOUNT}:{cluster}"
    brokers = ",".join(
        f"b-{n}.{_MSK_CLUSTER}.{cluster_id[:6]}.c2.kafka.{testing.REGION}.amazonaws.com:9098" for n in (1, 2)
    )
    return {"eventSource": "aws:kafka", "eventSourceArn": arn, "bootstrapServers": brokers, "records": grouped}


def build_event(
    source: str,
    count: int,
    *,
    fail_every: int | None = None,
    seed: int = 0,
    name: str | None = None,
    groups: int = 3,
    time_ms: int | None = None,
    progress: Callable[[int], None] | None = None,
    kafka_source: str = "msk",
    partitions: int = 3,
) -> dict[str, Any]:
    """The event ``sample-event`` prints, as a dict (for use from Python and tests).

    Record ``i`` (0-based, in the order generated) is poison when ``(i + 1) % fail_every == 0``.
    ``groups`` is the number of FIFO message groups (``sqs-fifo``), assigned round-robin as
    ``customer-001``, ``customer-002``...; ``partitions`` the number of Kafka partitions, and
    ``kafka_source`` ``msk`` or ``self-managed``.
    """
    if source not in SOURCES:
        raise UsageProblem(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    name = name or SOURCES[source]
    if source == "sqs-fifo" and not name.endswith(".fifo"):
        raise UsageProblem(f"FIFO queue names end in .fifo, got --source-name {name!r}")
    if kafka_source not in KAFKA_SOURCES:
        raise UsageProblem(f"unknown Kafka source {kafka_source!r}; valid: {', '.join(KAFKA_SOURCES)}")
    newest_ms = int(time.time() * 1000) if time_ms is None else time_ms
    factory: _Factory
    if source == "kinesis":
        factory = _kinesis_factory(name)
    elif source == "dynamodb":
        factory = _dynamodb_factory(name)
    elif source == "kafka":
        factory = _kafka_factory(name, partitions)
    else:
        factory = _sqs_factory(name, seed, groups if source == "sqs-fifo" else None, newest_ms + 5)
    rng = random.Random(seed)
    records = []
    for index in range(count):
        poison = fail_every is not None and (index + 1) % fail_every == 0
        records.append(factory(index, rng, poison, newest_ms - (count - 1 - index) * _SPACING_MS))
        if progress is not None and (index + 1) % _PROGRESS_EVERY == 0:
            progress(index + 1)
    if source == "kafka":
        return _kafka_event(records, kafka_source, seed, fail_every)
    return {"Records": records}


@click.command("sample-event")
@click.argument("source", type=click.Choice(list(SOURCES)), metavar="{" + "|".join(SOURCES) + "}")
@click.option("--count", "-c", type=click.IntRange(1, MAX_COUNT), default=10, show_default=True, help="Records.")
@click.option(
    "--fail-every",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help='Make every K-th record poison ("fail": true in its payload); the examples\' handlers raise on it.',
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for identifiers and payloads.")
@click.option(
    "--groups", type=click.IntRange(1, 10_000), default=3, show_default=True, help="Message groups (sqs-fifo)."
)
@click.option(
    "--kafka-source",
    type=click.Choice(KAFKA_SOURCES),
    default="msk",
    show_default=True,
    help="kafka: Amazon MSK (aws:kafka, with eventSourceArn) or self-managed (SelfManagedKafka).",
)
@click.option("--partitions", type=click.IntRange(1, 1000), default=3, show_default=True, help="Partitions (kafka).")
@click.option("--source-name", default=None, help="Queue, stream, table or topic name (default per source).")
@click.option("--time", "time_ms", type=int, default=None, help="Epoch ms of the newest record [default: now].")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Write the event here ('-' for stdout).",
)
def command(
    source: str,
    count: int,
    fail_every: int | None,
    seed: int,
    groups: int,
    kafka_source: str,
    partitions: int,
    source_name: str | None,
    time_ms: int | None,
    output: str,
) -> None:
    """Print a realistic Lambda event for SOURCE, e.g. to feed `observed-batch invoke`."""
    progress = Progress("generated records", count)
    event = build_event(
        source,
        count,
        fail_every=fail_every,
        seed=seed,
        name=source_name,
        groups=groups,
        time_ms=time_ms,
        progress=progress.update,
        kafka_source=kafka_source,
        partitions=partitions,
    )
    text = json.dumps(event, indent=2) + "\n"
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageProblem(f"cannot write {output}: {exc.strerror or exc}") from None
    poison = count // fail_every if fail_every else 0
    click.echo(f"wrote {count} {source} records ({poison} poison) to {output}", err=True)
