"""The commpeak fake (tests/fakes/commpeak.py, written from seed 000) as a process of its own, for the
end-to-end HTTP benchmark: every message is DELIVRD at its first status query."""

from __future__ import annotations

import argparse

import uvicorn

from tests.fakes.commpeak import FakeCommpeakState, create_app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    state = FakeCommpeakState(username="bench", password="secret", statuses=["DELIVRD"], record=False)
    uvicorn.run(create_app(state), host="127.0.0.1", port=args.port, log_level="warning", loop="uvloop",
                http="httptools", access_log=False)


if __name__ == "__main__":
    main()
