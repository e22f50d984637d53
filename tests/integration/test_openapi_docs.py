"""The OpenAPI document: every operation has a summary, an example for its request body and for every
answer it declares, errors in the contract's shape; /docs renders from /openapi.json."""

from __future__ import annotations

import re
from typing import Any

import httpx


def examples_of(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [e["value"] for e in media.get("examples", {}).values()]


async def test_every_operation_is_documented_with_examples(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    operations = [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 10
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), f"{where}: no summary"
        assert "422" not in op["responses"], f"{where}: validation errors are 400, not 422"
        if "requestBody" in op:
            for media in op["requestBody"]["content"].values():
                assert examples_of(media), f"{where}: request body without an example"
        for code, response in op["responses"].items():
            medias = list(response.get("content", {}).values())
            assert medias and all(examples_of(m) for m in medias), f"{where} {code}: no example"
            if code.startswith(("4", "5")) and not path.startswith("/health"):
                for media in medias:
                    for example in examples_of(media):
                        assert set(example) == {"error"}, f"{where} {code}"
                        assert set(example["error"]) == {"code", "message", "field"}, f"{where} {code}"


async def test_send_examples_are_accepted_as_documented(api: httpx.AsyncClient) -> None:
    """The request examples are real requests: each one is answered 200."""
    spec = (await api.get("/openapi.json")).json()
    media = spec["paths"]["/msg-client/send"]["post"]["requestBody"]["content"]["application/json"]
    for body in examples_of(media):
        r = await api.post("/msg-client/send", json=body)
        assert r.status_code == 200, (body, r.text)


async def test_docs_and_redoc_load_their_assets_from_the_gateway(api: httpx.AsyncClient) -> None:
    """No CDN: every script and stylesheet of /docs and /redoc is served by the gateway itself
    (the browser check is tests/e2e/test_docs_offline_browser.py)."""
    for page in ("/docs", "/redoc"):
        r = await api.get(page)
        assert r.status_code == 200 and "/openapi.json" in r.text
        assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", r.text), f"{page} loads from another host"
        assets = re.findall(r"(?:src|href)=[\"']?(/docs-static/[^\"' >]+)", r.text)
        assert assets, page
        for asset in assets:
            assert (await api.get(asset)).status_code == 200, asset
