"""Builds the configured providers (contract §5 `providers`)."""

from __future__ import annotations

from app.config import HttpProviderConfig, Settings, SmppProviderConfig
from app.providers.base import Provider


def build_providers(settings: Settings) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    for cfg in settings.providers:
        providers[cfg.name] = build_provider(cfg, settings)
    return providers


def build_provider(cfg: SmppProviderConfig | HttpProviderConfig, settings: Settings) -> Provider:
    # Imported here so a deployment without a dialect's module loaded pays nothing for it.
    if isinstance(cfg, SmppProviderConfig):
        from app.providers.smpp.provider import SmppProvider

        return SmppProvider(cfg)
    if cfg.dialect == "commpeak":
        from app.providers.http.commpeak import CommpeakProvider

        return CommpeakProvider(cfg)
    if cfg.dialect == "bulksms":
        from app.providers.http.bulksms import BulksmsProvider

        return BulksmsProvider(cfg)
    if cfg.dialect == "websmpp":
        from app.providers.http.websmpp import WebsmppProvider

        return WebsmppProvider(cfg)
    from app.providers.http.twilio import TwilioProvider

    return TwilioProvider(cfg, settings.public_url)
