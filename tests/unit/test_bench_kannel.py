"""bench/kannel.py's own parts that need no Kannel: the configuration it writes and how it counts the
DLR callbacks (lost, duplicated, not of the request they name)."""

from __future__ import annotations

from pathlib import Path

from bench.kannel import DlrCounts, Ports, destination, kannel_config


def test_the_config_listens_on_loopback_only_with_one_transceiver_and_a_window_per_bind(tmp_path: Path) -> None:
    ports = Ports()
    config = kannel_config(tmp_path, ports, sessions=2, window=100, store="file")
    groups = config.split("\n\n")
    smscs = [g for g in groups if g.startswith("group = smsc\n")]
    assert len(smscs) == 2
    assert sum("transceiver-mode = true" in g for g in smscs) == 1  # the other binds as a transmitter
    assert all("max-pending-submits = 100" in g and f"port = {ports.smpp}" in g for g in smscs)
    assert all('smsc-id = "sim"' in g for g in smscs)  # a receipt on either bind finds its message
    for key in ("admin-interface", "smsbox-interface", "sendsms-interface"):
        assert f'{key} = "127.0.0.1"' in config
    assert 'store-type = "file"' in config and f'store-location = "{tmp_path / "kannel.store"}"' in config


def _callback(index: int, kind: int, first: int = 0, count: int = 10) -> str:
    number = destination(index).replace("+", "%2B")
    return f"/dlr?m={first}&n={count}&p={number}&t={kind}"


def test_final_callbacks_are_counted_once_per_number_and_the_rest_apart() -> None:
    counts = DlrCounts()
    counts.record(_callback(1, 1))
    counts.record(_callback(2, 2))
    counts.record(_callback(1, 1))  # the same report again
    counts.record(_callback(3, 8))  # an SMSC ack: not final
    counts.record(_callback(11, 1))  # a number the request it names does not hold
    counts.record("/dlr?p=garbage")
    assert counts.callbacks == 6
    assert dict(counts.final) == {destination(1): 2, destination(2): 1, destination(11): 1}
    assert counts.duplicates == 1
    assert dict(counts.statuses) == {"delivered": 3, "failed": 1}
    assert dict(counts.other_types) == {8: 1}
    assert counts.mismatched == 1 and counts.malformed == 1
