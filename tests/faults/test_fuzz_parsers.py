"""Fuzzing the parsers with hypothesis: SQS/EventBridge messages, DescribeSpotPriceHistory pages,
Price List items, the Spot Advisor feed, CLI arguments. Property: a parsed record or a clear typed
rejection (Rejected / ValidationError), never another exception, never a partial write."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spot_pipelines.core import market_data as md
from spot_pipelines.core.accounts import AccountRequest, build_request
from spot_pipelines.core.clock import utc_today, utcnow
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.interruptions import DETAIL_TYPES, InterruptionEvent, Message, Rejected, parse_message

# A well-formed time a few days old: derived from the clock so the inputs never age.
RECENT = (utcnow() - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")

# Thousands of examples per parser inside `make test` (about 1.5 minutes in all on a loaded 2-core
# machine); SPOT_FAULTS_FUZZ_SCALE=3 (`make reliability`) runs three times as many.
_SCALE = float(os.environ.get("SPOT_FAULTS_FUZZ_SCALE", "1"))
EXAMPLES = {
    name: max(1, int(n * _SCALE))
    for name, n in {
        "messages": 2000,
        "pages": 2000,
        "price_list": 2000,
        "advisor": 2000,
        "cli": 2000,
        "store": 1000,
    }.items()
}
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
COUNTS: dict[str, int] = {}


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


# JSON-ish values, with the awkward ones: NaN/inf strings, huge numbers, nesting, unicode.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "nan", "inf", "-1", "0", "1e309", "0.0416", "NaN"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
iso_times = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]),
    ).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            RECENT,
            "2026-13-01T00:00:00Z",
            "yesterday",
            "",
        ]
    ),
    json_values,
)


@st.composite
def eventbridge_bodies(draw) -> str:
    event = {
        "version": "0",
        "id": draw(st.one_of(st.uuids().map(str), json_values, st.text(min_size=60, max_size=70))),
        "detail-type": draw(st.one_of(st.sampled_from(sorted(DETAIL_TYPES)), json_values)),
        "source": "aws.ec2",
        "account": draw(st.one_of(st.from_regex(r"\A\d{12}\Z"), json_values)),
        "time": draw(iso_times),
        "region": draw(st.one_of(st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]), json_values)),
        "resources": draw(
            st.one_of(
                st.lists(
                    st.one_of(st.from_regex(r"\Aarn:aws:ec2:us-east-1[a-f]:instance/i-[0-9a-f]{17}\Z"), json_values),
                    max_size=3,
                ),
                json_values,
            )
        ),
        "detail": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "instance-id": st.one_of(st.from_regex(r"\Ai-[0-9a-f]{17}\Z"), json_values),
                        "instance-action": json_values,
                        "state": json_values,
                    }
                ),
                json_values,
            )
        ),
    }
    for key in draw(st.lists(st.sampled_from(sorted(event)), max_size=3)):
        event.pop(key, None)
    body = json.dumps(event)
    wrap = draw(st.sampled_from(["plain", "plain", "sns", "truncated", "garbage"]))
    if wrap == "sns":
        return json.dumps({"Type": "Notification", "Message": body})
    if wrap == "truncated":
        return body[: draw(st.integers(0, len(body)))]
    if wrap == "garbage":
        return draw(st.text(max_size=200))
    return body


@settings(FUZZ, max_examples=EXAMPLES["messages"])
@given(eventbridge_bodies())
def test_fuzz_sqs_eventbridge_messages(body):
    _count("messages")
    parsed = parse_message(body)
    assert isinstance(parsed, (InterruptionEvent, Rejected))
    if isinstance(parsed, Rejected):
        assert parsed.reason and len(parsed.reason) < 400
    else:
        assert parsed.event_type in DETAIL_TYPES.values() and parsed.event_time.tzinfo is not None
        assert len(parsed.event_id) <= 64 and len(parsed.aws_account_id) == 12


# --- DescribeSpotPriceHistory pages -------------------------------------------------------------

# A recent day from the one clock; records range from 19 days before it to 3 days after (around the window).
DAY = utc_today() - timedelta(days=12)
_FIRST = datetime.combine(DAY - timedelta(days=19), datetime.min.time())
_LAST = datetime.combine(DAY + timedelta(days=3), datetime.min.time())
ZONES = {"us-east-1a": "use1-az4", "us-east-1b": "use1-az6"}


class _FakeEC2:
    """Answers like a boto3 EC2 client would after parsing: pages of SpotPriceHistory records."""

    def __init__(self, pages):
        self._pages = pages

    def describe_availability_zones(self, **_):
        return {"AvailabilityZones": [{"ZoneName": n, "ZoneId": i} for n, i in ZONES.items()]}

    def get_paginator(self, name):
        assert name == "describe_spot_price_history"
        pages = self._pages

        class P:
            def paginate(self, **_):
                return iter(pages)

        return P()


records = st.fixed_dictionaries(
    {
        "AvailabilityZone": st.sampled_from(["us-east-1a", "us-east-1b", "us-east-1z"]),
        "InstanceType": st.sampled_from(["m5.large", "c6g.xlarge", "r5.xlarge"]),
        "ProductDescription": st.sampled_from(["Linux/UNIX", "Windows"]),
        "Timestamp": st.datetimes(min_value=_FIRST, max_value=_LAST, timezones=st.just(timezone.utc)),
    },
    optional={
        "SpotPrice": st.one_of(
            st.decimals(min_value=0, max_value=100, places=6).map(str),
            st.sampled_from(["nan", "inf", "-inf", "", "0.0416", "1e400", "abc"]),
            st.none(),
            st.integers(-5, 5),
        )
    },
)


@settings(FUZZ, max_examples=EXAMPLES["pages"])
@given(st.lists(st.fixed_dictionaries({"SpotPriceHistory": st.lists(records, max_size=12)}), max_size=4))
def test_fuzz_describe_spot_price_history_pages(pages):
    _count("pages")
    try:
        frame, missing, calls = md.region_history(_FakeEC2(pages), "us-east-1", DAY, None, ["Linux/UNIX"])
    except ValidationError as exc:
        assert exc.field in ("SpotPrice", "AvailabilityZone")
        return
    assert calls == 1 + len(pages) and missing == []
    assert list(frame.columns) == md.SPOT_PRICE_COLUMNS
    if len(frame):
        assert frame["price"].map(math.isfinite).all() and set(frame["day"]) == {DAY}
        assert frame["availability_zone_id"].isin(ZONES.values()).all()
        start = pd.Timestamp(DAY, tz="UTC")
        assert (frame["ts"] >= start).all() and (frame["ts"] < start + pd.Timedelta(days=1)).all()
        keys = frame[["availability_zone_id", "instance_type", "product_description", "ts"]]
        assert not keys.duplicated().any()  # the table's primary key: a load can never collide with itself


# --- Price List items -----------------------------------------------------------------------------


@st.composite
def price_list_items(draw):
    from tests.support.market_data import price_list_item

    base = json.loads(
        price_list_item(
            draw(st.sampled_from(["m5.large", "c6g.xlarge", ""])),
            "us-east-1",
            draw(
                st.one_of(
                    st.none(),
                    st.sampled_from(["0.0960000000", "0", "-1", "nan", "inf", "abc", ""]),
                    st.decimals(0, 50, places=10).map(str),
                )
            ),
        )
    )
    # Mutate the real shape: drop or replace a node at some path.
    paths = [
        ("product",),
        ("product", "attributes"),
        ("product", "attributes", "instanceType"),
        ("terms",),
        ("terms", "OnDemand"),
    ]
    for path in draw(st.lists(st.sampled_from(paths), max_size=2)):
        node = base
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if draw(st.booleans()):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = draw(json_values)
    raw = json.dumps(base)
    kind = draw(st.sampled_from(["json", "json", "truncated", "value"]))
    if kind == "truncated":
        return raw[: draw(st.integers(0, len(raw)))]
    if kind == "value":
        return json.dumps(draw(json_values))
    return raw


@settings(FUZZ, max_examples=EXAMPLES["price_list"])
@given(price_list_items())
def test_fuzz_price_list_items(raw):
    _count("price_list")
    try:
        itype, price = md.parse_price_list_item(raw, "us-east-1")
    except (ValidationError, ValueError):  # what region_on_demand records as a problem and skips
        return
    assert isinstance(itype, str) and itype and math.isfinite(price) and price > 0


# --- Spot Advisor feed ----------------------------------------------------------------------------


@st.composite
def advisor_feeds(draw) -> bytes:
    entry = st.one_of(
        st.fixed_dictionaries(
            {"r": st.one_of(st.integers(-1, 6), json_values), "s": st.one_of(st.integers(-5, 105), json_values)}
        ),
        json_values,
    )
    doc = {
        "ranges": draw(st.one_of(st.just([{"index": i} for i in range(5)]), json_values)),
        "spot_advisor": draw(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["us-east-1", "eu-west-1"]),
                    st.one_of(
                        st.dictionaries(
                            st.sampled_from(["Linux", "Windows", "Solaris"]),
                            st.one_of(
                                st.dictionaries(st.sampled_from(["m5.large", "c6g.xlarge", "x"]), entry, max_size=3),
                                json_values,
                            ),
                            max_size=3,
                        ),
                        json_values,
                    ),
                    max_size=2,
                ),
                json_values,
            )
        ),
        "instance_types": draw(
            st.one_of(
                st.dictionaries(
                    st.sampled_from(["m5.large", "c6g.xlarge", "weird"]),
                    st.one_of(st.fixed_dictionaries({"cores": json_values, "ram_gb": json_values}), json_values),
                    max_size=3,
                ),
                json_values,
            )
        ),
    }
    raw = json.dumps(doc).encode()
    if draw(st.integers(0, 9)) == 0:
        return raw[: draw(st.integers(0, len(raw)))]
    return raw


@settings(FUZZ, max_examples=EXAMPLES["advisor"])
@given(advisor_feeds())
def test_fuzz_spot_advisor_feed(raw):
    _count("advisor")
    try:
        feed = md.parse_advisor(raw, DAY)
    except ValidationError:
        return  # load_advisor falls back to the bundled snapshot with this reason
    for row in feed.rows:
        assert row["interruption_band"] in md.KNOWN_BANDS and 0 <= row["savings_pct"] <= 100
        assert row["operating_system"] in md.ADVISOR_OPERATING_SYSTEMS


# --- CLI arguments --------------------------------------------------------------------------------

near_valid = {
    "name": st.one_of(st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,62}\Z"), st.text(max_size=70)),
    "aws_account_id": st.one_of(st.from_regex(r"\A\d{12}\Z"), st.text(max_size=14)),
    "role_arn": st.one_of(
        st.none(), st.from_regex(r"\Aarn:aws:iam::\d{12}:role/[A-Za-z0-9+=,.@/-]{1,20}\Z"), st.text(max_size=40)
    ),
    "external_id": st.one_of(st.none(), st.from_regex(r"\A[\w+=,.@:/-]{2,30}\Z"), st.text(max_size=30)),
    "access_key_id": st.one_of(st.none(), st.from_regex(r"\A(AKIA|ASIA)[A-Z0-9]{16}\Z"), st.text(max_size=24)),
    "regions": st.one_of(
        st.none(),
        st.lists(st.one_of(st.sampled_from(["eu-west-1", "us-gov-west-1", " "]), st.text(max_size=15)), max_size=4),
    ),
}


@settings(FUZZ, max_examples=EXAMPLES["cli"])
@given(st.fixed_dictionaries(near_valid))
def test_fuzz_cli_account_arguments(args):
    _count("cli")
    try:
        request = build_request(
            args["name"],
            args["aws_account_id"],
            role_arn=args["role_arn"],
            external_id=args["external_id"],
            access_key_id=args["access_key_id"],
            regions=args["regions"],
        )
    except ValidationError as exc:
        assert exc.field in ("name", "aws_account_id", "auth", "role_arn", "external_id", "access_key_id", "regions")
        return
    assert isinstance(request, AccountRequest) and request.auth_method in ("role", "keys")
    assert request.name == args["name"] and request.aws_account_id == args["aws_account_id"]


# --- never a partial write: random SQS batches stored in one transaction --------------------------


@pytest.fixture(scope="module")
def store_db(tmp_path_factory):
    from spot_pipelines.db.engine import ensure_schema
    from tests.support.accounts import add_account

    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'app.db'}"
    ensure_schema(url)
    add_account(url, "prod", "111122223333")
    return url


@settings(FUZZ, max_examples=EXAMPLES["store"])
@given(
    st.lists(
        st.one_of(
            eventbridge_bodies(),
            st.builds(
                lambda i, j: json.dumps(
                    {
                        "version": "0",
                        "id": f"dup-{i}",
                        "detail-type": "EC2 Spot Instance Interruption Warning",
                        "source": "aws.ec2",
                        "account": "111122223333",
                        "time": RECENT,
                        "region": "us-east-1",
                        "resources": [],
                        "detail": {"instance-id": f"i-{j:017x}"},
                    }
                ),
                st.integers(0, 3),
                st.integers(0, 3),
            ),
        ),
        min_size=1,
        max_size=15,
    )
)
def test_fuzz_stored_batches_are_all_or_nothing(store_db, bodies):
    from sqlalchemy import delete, func, select

    from spot_pipelines.core.clock import utcnow
    from spot_pipelines.db.engine import session_factory
    from spot_pipelines.db.interruptions import DeadLetter, SpotInterruptionEvent, store_interruption_messages

    _count("store")
    messages = [Message(f"m{i}", f"h{i}", b) for i, b in enumerate(bodies)]
    with session_factory(store_db)() as session, session.begin():
        session.execute(delete(SpotInterruptionEvent))
        session.execute(delete(DeadLetter))
    with session_factory(store_db)() as session, session.begin():
        result = store_interruption_messages(session, messages, received_at=utcnow())
    with session_factory(store_db)() as session:
        events = session.scalar(select(func.count()).select_from(SpotInterruptionEvent))
        letters = session.scalar(select(func.count()).select_from(DeadLetter))
    # Every message is accounted for exactly once: recorded, a duplicate, or dead-lettered.
    assert result.recorded == events and result.dead_lettered == letters
    assert result.recorded + result.duplicates + result.dead_lettered == len(messages)


def test_fuzz_example_counts(report):
    """Runs after the fuzzers in this module: records how many examples each one executed."""
    if not COUNTS:
        pytest.skip("no fuzzer ran in this session")
    # Examples executed (hypothesis may add a few explicit/shrinking calls): in the name, not in "runs".
    report.fault = f"fuzz ({sum(COUNTS.values())} examples): " + ", ".join(
        f"{k}={v}" for k, v in sorted(COUNTS.items())
    )
