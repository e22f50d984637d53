"""`smsgw <command> --help` explains every option (issue #17.7)."""

from __future__ import annotations

import argparse

import pytest

from app.cli import build_parser


def subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


@pytest.mark.parametrize("name", ["send", "status", "dev", "serve"])
def test_every_option_has_help(name: str) -> None:
    for action in subcommand(name)._actions:
        assert action.help, f"smsgw {name} {'/'.join(action.option_strings) or action.dest}: no help text"


def test_send_help_shows_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: nothing hyphenated across lines
    text = subcommand("send").format_help()
    for default in ("http://127.0.0.1:8080", "dev-key", "default 1000", "at most a year ahead"):
        assert default in text, default
