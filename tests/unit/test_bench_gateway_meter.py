"""bench.meters.GatewayMeter: the gateway's request and loop-lag figures over a window, from two
scrapes of its /metrics."""

from __future__ import annotations

from bench.meters import GatewayMeter, prometheus_samples

BEFORE = """# HELP smsgw_http_request_duration_seconds HTTP request latency
smsgw_http_request_duration_seconds_count{method="POST",route="/msg-client/send",status="200"} 10.0
smsgw_http_request_duration_seconds_sum{method="POST",route="/msg-client/send",status="200"} 0.5
smsgw_http_request_duration_seconds_count{method="GET",route="/metrics",status="200"} 3.0
smsgw_http_request_duration_seconds_sum{method="GET",route="/metrics",status="200"} 9.0
smsgw_event_loop_lag_seconds_bucket{le="0.001"} 4.0
smsgw_event_loop_lag_seconds_bucket{le="0.01"} 5.0
smsgw_event_loop_lag_seconds_bucket{le="0.1"} 6.0
smsgw_event_loop_lag_seconds_bucket{le="+Inf"} 6.0
smsgw_event_loop_lag_seconds_count 6.0
smsgw_event_loop_lag_seconds_sum 0.01
"""

# 1,000 more sends taking 20 s in all (20 ms each), one 400 taking 1 s; 100 more lag samples: 40 under
# 1 ms, 55 more under 10 ms, 5 more under 100 ms, 0.4 s late in all.
AFTER = """smsgw_http_request_duration_seconds_count{method="POST",route="/msg-client/send",status="200"} 1010.0
smsgw_http_request_duration_seconds_sum{method="POST",route="/msg-client/send",status="200"} 20.5
smsgw_http_request_duration_seconds_count{method="POST",route="/msg-client/send",status="400"} 1.0
smsgw_http_request_duration_seconds_sum{method="POST",route="/msg-client/send",status="400"} 1.0
smsgw_http_request_duration_seconds_count{method="GET",route="/metrics",status="200"} 4.0
smsgw_http_request_duration_seconds_sum{method="GET",route="/metrics",status="200"} 99.0
smsgw_event_loop_lag_seconds_bucket{le="0.001"} 44.0
smsgw_event_loop_lag_seconds_bucket{le="0.01"} 100.0
smsgw_event_loop_lag_seconds_bucket{le="0.1"} 106.0
smsgw_event_loop_lag_seconds_bucket{le="+Inf"} 106.0
smsgw_event_loop_lag_seconds_count 106.0
smsgw_event_loop_lag_seconds_sum 0.41
"""


def test_samples_are_read_with_their_labels() -> None:
    samples = prometheus_samples(BEFORE)
    assert ("smsgw_event_loop_lag_seconds_bucket", {"le": "+Inf"}, 6.0) in samples
    assert ("smsgw_event_loop_lag_seconds_sum", {}, 0.01) in samples
    assert len(samples) == 10  # comments are not samples


async def test_the_window_s_deltas_and_quantiles() -> None:
    texts = iter([BEFORE, AFTER])

    async def scrape() -> str:
        return next(texts)

    meter = GatewayMeter(scrape)
    await meter.start()
    lat = (await meter.result(0.035))["gateway_latency_ms"]
    assert lat["request_at_client"] == 35.0
    assert lat["request_in_handler"] == round(1000 * 21.0 / 1001, 2)  # the sends only, every status
    assert lat["loop_lag_samples"] == 100
    assert lat["loop_lag_mean"] == 4.0
    assert lat["loop_lag_p50_at_most"] == 10.0  # 40 of 100 under 1 ms, 95 under 10
    assert lat["loop_lag_p99_at_most"] == 100.0


async def test_no_figures_without_scrapes() -> None:
    async def scrape() -> str:
        return ""  # several worker processes: not measured

    meter = GatewayMeter(scrape)
    await meter.start()
    lat = (await meter.result(None))["gateway_latency_ms"]
    assert lat["loop_lag_samples"] == 0 and lat["request_in_handler"] is None and lat["loop_lag_mean"] is None
