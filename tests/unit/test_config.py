"""Settings: environment variables over the YAML file named by SMSGW_CONFIG (contract §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings

YAML = """
port: 9000
default_country: LB
delivery_report_queue: reports-from-yaml
providers:
  - {name: smsc-main, type: smpp, host: 10.0.0.5, port: 2775, system_id: smppclient1, password: password,
     bind: transmitter_receiver, sessions: 2, window: 20}
  - {name: bulk, type: http, dialect: bulksms, url: "http://127.0.0.1:8002/bulksms", username: user, password: secret}
routes:
  - {channel: smpp, providers: [smsc-main]}
  - {channel: http, providers: [bulk]}
default_channel: http
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "smsgw.yaml"
    path.write_text(YAML)
    for name in ("SMSGW_PORT", "SMSGW_DEFAULT_COUNTRY", "SMSGW_DELIVERY_REPORT_QUEUE", "SMSGW_PROVIDERS",
                 "SMSGW_ROUTES", "SMSGW_DEFAULT_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMSGW_CONFIG", str(path))
    return path


def test_yaml_file_gives_providers_routes_and_top_level_settings(config_file: Path) -> None:
    s = Settings()
    assert (s.port, s.default_country, s.delivery_report_queue, s.default_channel) == (
        9000, "LB", "reports-from-yaml", "http")
    smpp = s.provider("smsc-main")
    assert smpp.type == "smpp" and (smpp.host, smpp.bind, smpp.sessions, smpp.window) == (
        "10.0.0.5", "transmitter_receiver", 2, 20)
    assert [(r.channel, r.providers) for r in s.routes] == [("smpp", ["smsc-main"]), ("http", ["bulk"])]


def test_environment_wins_over_the_yaml_file(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSGW_PORT", "9100")
    monkeypatch.setenv("SMSGW_DEFAULT_COUNTRY", "FR")
    monkeypatch.setenv("SMSGW_ROUTES", '[{"channel": "smpp", "providers": ["bulk"]}]')
    s = Settings()
    assert (s.port, s.default_country) == (9100, "FR")
    assert [(r.channel, r.providers) for r in s.routes] == [("smpp", ["bulk"])]  # a whole key, not merged
    assert s.delivery_report_queue == "reports-from-yaml"  # untouched keys still come from the file


def test_a_yaml_route_to_an_unknown_provider_is_refused_at_start(config_file: Path) -> None:
    config_file.write_text(YAML.replace("providers: [bulk]", "providers: [nope]"))
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        Settings()
