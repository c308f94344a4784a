"""The walk-forward replay on markets whose answer is known: computed here from the inputs, not by the replay."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from spot_pipelines.core.backtest import BacktestConfig, run_backtest
from spot_pipelines.core.clock import utc_today
from spot_pipelines.core.errors import ValidationError
from spot_pipelines.core.optimization import HOURS_PER_MONTH, RecommendConfig
from tests.support.factories import catalog, on_demand

AZ, REGION = "use1-az1", "us-east-1"
OD = 0.096  # m5.large on demand in the factories' price list
DAYS, LOOKBACK = 7, 14
START = pd.Timestamp(utc_today() - timedelta(days=DAYS), tz="UTC").to_pydatetime()
RESTART = RecommendConfig.restart_cost_usd + RecommendConfig.restart_cost_on_demand_hours * OD
HOURS = 24 * DAYS


def fleet(n: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "account_id": 1,
                "instance_id": f"i-{k}",
                "region": REGION,
                "availability_zone_id": AZ,
                "instance_type": "m5.large",
                "lifecycle": "on-demand",
                "state": "running",
                "platform": "Linux/UNIX",
                "architecture": None,
                "tags": {},
            }
            for k in range(n)
        ]
    )


def prices(*markets: tuple[str, float]) -> pd.DataFrame:
    """One record per market at the lookback's start: the price stays in force through the window."""
    ts = START - timedelta(days=LOOKBACK)
    return pd.DataFrame(
        [
            {
                "ts": ts,
                "region": REGION,
                "availability_zone": "us-east-1a",
                "availability_zone_id": AZ,
                "instance_type": itype,
                "product_description": "Linux/UNIX",
                "price": price,
            }
            for itype, price in markets
        ]
    )


def warnings_every(hours: int) -> pd.DataFrame:
    first = START - timedelta(days=LOOKBACK)
    n = 24 * (LOOKBACK + DAYS) // hours
    return pd.DataFrame(
        {
            "event_type": "spot_interruption_warning",
            "event_time": [first + timedelta(hours=hours * k, minutes=5) for k in range(n)],
            "region": REGION,
            "availability_zone_id": AZ,
            "instance_type": "m5.large",
        }
    )


def replay(price_rows, events=None, od=None, n=2, config=None):
    no_advisor = pd.DataFrame(columns=["day", "region", "operating_system", "instance_type", "interruption_band"])
    result = run_backtest(
        fleet(n),
        catalog(),
        on_demand() if od is None else od,
        price_rows,
        no_advisor,
        events,
        start=START,
        config=config or BacktestConfig(window_days=DAYS, lookback_days=LOOKBACK),
    )
    return result, result.policies.set_index("policy")


def test_a_market_always_at_30_percent_of_on_demand_saves_exactly_what_it_should():
    result, p = replay(prices(("m5.large", 0.3 * OD)))
    n = 2
    on_demand_cost = n * OD * HOURS
    # Each instance moves once, on the first day, and then pays 30% of on-demand every hour.
    policy_cost = n * (0.3 * OD * HOURS + RESTART)
    per_month = HOURS_PER_MONTH / (n * HOURS)
    assert result.instance_hours == n * HOURS
    assert round(p.at["on_demand", "total_cost_usd"], 2) == round(on_demand_cost, 2)
    assert round(p.at["recommend", "total_cost_usd"], 2) == round(policy_cost, 2)
    saved = p.at["recommend", "savings_vs_on_demand_usd_per_instance_month"]
    assert round(saved, 2) == round((on_demand_cost - policy_cost) * per_month, 2)
    assert p.at["recommend", "moves"] == n and p.at["recommend", "interruptions"] == 0
    assert p.at["recommend", "restarts"] == n
    # The one market is also the hindsight best: no regret.
    assert p.at["recommend", "regret_usd_per_instance_month"] == pytest.approx(0, abs=1e-9)
    assert p.at["cheapest_spot", "total_cost_usd"] == pytest.approx(policy_cost)


def test_a_market_interrupted_every_3_hours_loses_to_on_demand_and_the_policy_sees_it():
    result, p = replay(prices(("m5.large", 0.3 * OD)), events=warnings_every(3))
    n = 2
    interruptions = n * HOURS // 3
    cheapest = n * (0.3 * OD * HOURS + RESTART) + interruptions * RESTART
    on_demand_cost = n * OD * HOURS
    assert cheapest > on_demand_cost  # the premise: restarts eat the discount
    assert p.at["cheapest_spot", "total_cost_usd"] == pytest.approx(cheapest)
    assert p.at["cheapest_spot", "interruptions"] == interruptions
    assert p.at["cheapest_spot", "interruptions_per_1000_instance_hours"] == pytest.approx(1000 / 3)
    assert p.at["recommend", "total_cost_usd"] == pytest.approx(on_demand_cost)
    assert p.at["recommend", "moves"] == 0 and p.at["recommend", "interruptions"] == 0
    assert p.at["recommend", "regret_usd_per_instance_month"] == pytest.approx(0, abs=1e-9)
    regret = (cheapest - on_demand_cost) * HOURS_PER_MONTH / (n * HOURS)
    assert p.at["cheapest_spot", "regret_usd_per_instance_month"] == pytest.approx(regret)


def test_a_window_with_no_history_is_a_clear_error_naming_the_window():
    late = prices(("m5.large", 0.3 * OD)).assign(ts=START + timedelta(days=DAYS + 1))
    with pytest.raises(ValidationError) as err:
        replay(late)
    message = str(err.value)
    assert "backtest window" in message
    assert f"{START:%Y-%m-%d}..{START + timedelta(days=DAYS - 1):%Y-%m-%d}" in message


def test_a_market_with_prices_but_no_on_demand_price_is_skipped_with_the_reason():
    od = on_demand()
    od = od[od["instance_type"] != "m6i.large"]
    # m6i.large is compatible and far cheaper, but without its on-demand price it is no candidate.
    result, p = replay(prices(("m5.large", 0.3 * OD), ("m6i.large", 0.01)), od=od)
    reasons = result.skipped["reason"].tolist()
    assert any("no on-demand price for m6i.large (Linux) in us-east-1" in r for r in reasons)
    assert p.at["cheapest_spot", "total_cost_usd"] == pytest.approx(2 * (0.3 * OD * HOURS + RESTART))


def test_bad_config_names_the_field():
    with pytest.raises(ValidationError, match="window_days"):
        BacktestConfig(window_days=0)


def test_a_burst_then_quiet_sends_the_fleet_on_demand_for_the_quiet_period_only():
    # Three warnings in three hours on the window's third day, then nothing.
    burst_at = START + timedelta(days=2)
    events = warnings_every(1).iloc[:0]
    events = pd.concat(
        [events, *(warnings_every(1).iloc[[0]].assign(event_time=burst_at + timedelta(hours=h)) for h in (1, 2, 3))]
    )
    result, p = replay(prices(("m5.large", 0.3 * OD)), events=events, n=1)
    per_month = HOURS_PER_MONTH / HOURS
    # Spot from day 0; interrupted three times on day 2; the pool is hot at day 3's start (the last warning is
    # under 24 h old) so the instance goes on demand for day 3, and back to spot on day 4 once it is quiet.
    gated = 0.3 * OD * (HOURS - 24) + OD * 24 + RESTART * (3 + 3)
    assert p.at["recommend", "total_cost_usd"] == pytest.approx(gated)
    assert (p.at["recommend", "moves"], p.at["recommend", "interruptions"]) == (3, 3)
    assert p.at["recommend", "flips_per_instance_month"] == pytest.approx(3 * per_month)
    # Without the hysteresis the policy stays in the pool: one flip, the same three interruptions.
    stateless = 0.3 * OD * HOURS + RESTART * (1 + 3)
    assert p.at["recommend_stateless", "total_cost_usd"] == pytest.approx(stateless)
    assert p.at["recommend_stateless", "flips_per_instance_month"] == pytest.approx(per_month)
