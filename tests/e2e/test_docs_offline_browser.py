"""/docs and /redoc render in a real browser with no network (issue #17.1): headless Chromium may
resolve nothing but loopback, so a page that still needs a CDN shows no operations."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import api_settings
from matplotlib import image
from support.servers import uvicorn_in_thread

from app.main import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Every host but loopback fails to resolve, and any proxy use fails: the page gets no network.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.fail("Debian chromium is missing: scripts/setup-tools.sh (make test runs it) installs it")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=15000",
           *OFFLINE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)


def test_swagger_ui_shows_the_operations_without_network(sqlite_url: str, tmp_path: Path) -> None:
    with uvicorn_in_thread(create_app(api_settings(sqlite_url))) as base:
        dom = chromium(tmp_path, "--dump-dom", f"{base}/docs").stdout
        shot = tmp_path / "docs.png"
        chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", f"{base}/docs")
    # Swagger UI drew one block per operation from /openapi.json: its JavaScript ran from our server.
    assert dom.count('class="opblock opblock-') >= 10, dom[:2000]
    for path in ("/msg-client/send", "/msg-client/receive", "/msg-client/delivery-notification"):
        assert f'data-path="{path}"' in dom
    pixels = image.imread(str(shot))
    assert pixels.shape[:2] == (1600, 1280)
    # A blank page is one colour; the operations' coloured method badges make many.
    assert pixels.reshape(-1, pixels.shape[-1])[:, :3].std(axis=0).max() > 0.05


def test_redoc_renders_without_network(sqlite_url: str, tmp_path: Path) -> None:
    with uvicorn_in_thread(create_app(api_settings(sqlite_url))) as base:
        dom = chromium(tmp_path, "--dump-dom", f"{base}/redoc").stdout
    assert "Queue SMS" in dom and "/msg-client/send" in dom, dom[:2000]
