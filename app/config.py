"""Settings: environment variables (prefix `SMSGW_`) over an optional YAML file named by `SMSGW_CONFIG`.

The YAML file names the upstream providers and the routes (contract §5); every top-level key can
also be set from the environment (lists and objects as JSON). Secrets are `SecretStr` so they never
print in a repr or a log line. Validation happens once, at start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.domain.netguard import IPNetwork, parse_networks


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmppProviderConfig(_Strict):
    """An SMPP 3.4 upstream (our asyncio ESME sessions)."""

    name: str
    type: Literal["smpp"] = "smpp"
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str
    password: SecretStr
    system_type: str = ""
    bind: Literal["transceiver", "transmitter_receiver"] = "transceiver"
    sessions: int = Field(default=1, ge=1, le=64)
    window: int = Field(default=10, ge=1, le=10_000)
    throughput: float = Field(default=0, ge=0, description="submit_sm per second per provider, 0 = unlimited")
    enquire_link_interval: float = Field(default=30.0, gt=0)
    response_timeout: float = Field(default=15.0, gt=0)
    source_ton: int | None = None
    source_npi: int | None = None
    dest_ton: int = 1
    dest_npi: int = 1
    default_from: str | None = None
    latin1: bool = Field(default=False, description="the SMSC takes data_coding 3 (Latin-1) when a message asks for it")
    # How a receipt writes the id submit_sm_resp gave: `same`; `hex` (receipt in hex, resp in decimal);
    # `decimal` (receipt in decimal, resp in hex); `auto` (the same id, else the other base).
    receipt_id_format: Literal["same", "hex", "decimal", "auto"] = "same"
    query_after: float | None = Field(
        default=None, gt=0,
        description="seconds without a final receipt after which the part's status is asked with query_sm")
    query_interval: float = Field(default=600.0, gt=0, description="first wait between query_sm for one part")
    temporary_errors: list[int] = Field(
        default_factory=list,
        description="submit_sm_resp statuses retried besides ESME_RSYSERR, ESME_RMSGQFUL, ESME_RTHROTTLED and "
                    "ESME_RX_T_APPN (e.g. [0x45] or [\"0x45\"])",
    )

    @field_validator("temporary_errors", mode="before")
    @classmethod
    def _status_numbers(cls, value: Any) -> Any:
        # YAML reads 0x45 as a number, JSON (SMSGW_PROVIDERS) cannot: accept "0x45" strings too.
        if isinstance(value, list):
            return [int(v, 0) if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _smpp_field_sizes(self) -> SmppProviderConfig:
        # SMPP 3.4 §4.1.1: C-Octet Strings of at most 16 / 9 / 13 octets including the NUL.
        for field_name, value, limit in (("system_id", self.system_id, 15),
                                         ("password", self.password.get_secret_value(), 8),
                                         ("system_type", self.system_type, 12)):
            if len(value.encode()) > limit:
                raise ValueError(f"provider {self.name}: SMPP {field_name} is at most {limit} characters")
        return self


HttpDialect = Literal["commpeak", "bulksms", "websmpp", "twilio"]


class HttpProviderConfig(_Strict):
    """A provider's HTTP API; `dialect` names the seed document it speaks."""

    name: str
    type: Literal["http"] = "http"
    dialect: HttpDialect
    url: str
    username: str | None = None
    password: SecretStr | None = None
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    service_type: str = ""
    method: Literal["GET", "POST"] = "GET"
    timeout: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=20, ge=1, le=1000)
    throughput: float = Field(default=0, ge=0)
    default_from: str | None = None
    poll_interval: float = Field(default=30.0, gt=0, description="first status query after submit, seconds")
    poll_max_age: float = Field(default=48 * 3600.0, gt=0)
    max_reply_bytes: int = Field(default=1024 * 1024, ge=1024,
                                 description="a larger reply body is refused (an unknown outcome for a submit)")

    @model_validator(mode="after")
    def _credentials(self) -> HttpProviderConfig:
        if self.dialect == "twilio":
            if not self.account_sid or self.auth_token is None:
                raise ValueError(f"provider {self.name}: twilio needs account_sid and auth_token")
        elif not self.username or self.password is None:
            raise ValueError(f"provider {self.name}: {self.dialect} needs username and password")
        return self


ProviderConfig = Annotated[SmppProviderConfig | HttpProviderConfig, Field(discriminator="type")]


class RouteConfig(_Strict):
    channel: str
    providers: list[str] = Field(min_length=1)
    prefix: str = ""

    @field_validator("prefix")
    @classmethod
    def _plus_prefix(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith("+"):
            value = "+" + value
        return value


class YamlSource(PydanticBaseSettingsSource):
    """Reads the file named by `SMSGW_CONFIG` (if any); the environment wins over it."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get("SMSGW_CONFIG")
        self._data: dict[str, Any] = {}
        if path:
            text = Path(path).read_text(encoding="utf-8")
            loaded = yaml.safe_load(text) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: the top level must be a mapping")
            self._data = loaded

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSGW_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./smsgw.db"
    database_pool_size: int = 10
    broker_url: str = Field(
        default="stomp://127.0.0.1:61613",
        description="`embedded`, or one or more `stomp://host:port` URLs, comma-separated, tried in order",
    )
    broker_user: str | None = None
    broker_password: SecretStr | None = None
    delivery_report_queue: str = "delivery-report"
    inbound_queue: str = "inbound-sms"
    inbound_forward_url: str | None = None
    api_keys: SecretStr = SecretStr("")
    admin_api_keys: SecretStr = Field(
        default=SecretStr(""), description="bootstrap keys that see every account's messages (admin)",
    )
    webhook_auth: str = "twilio-signature"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    providers: list[ProviderConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    default_channel: str = "smpp"

    max_body_bytes: int = 2 * 1024 * 1024
    max_recipients: int = 10_000
    rate_limit_per_second: float = Field(default=0, ge=0, description="per API key, 0 = unlimited")
    rate_limit_burst: int = 0
    default_country: str | None = Field(default=None, description="region for numbers without + (e.g. LB)")
    # The request head under `smsgw serve` (app/api/http_limits.py): 431 over a size, 408 when too slow.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, description="request line + headers, bytes")
    max_headers: int = Field(default=100, ge=10, description="request headers per request")
    header_timeout_seconds: float = Field(default=10.0, gt=0, description="to receive a request's headers")

    workers_enabled: bool = True
    dispatch_batch: int = 500
    dispatch_lease_seconds: float = 60.0
    # How many messages /send may hand straight to this process's dispatcher (stored already claimed by
    # it), those in flight included, at most; the rest are claimed from the database as they become due.
    # Below this, the dispatcher takes what it starts in 0.6 of a lease (app/dispatch/start_rate.py).
    dispatch_handoff_max: int = Field(default=100_000, ge=0)
    retry_max_attempts: int = 8
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    pending_receipt_ttl_seconds: float = 72 * 3600.0
    idempotency_ttl_seconds: float = Field(
        default=24 * 3600.0, gt=0, description="how long an Idempotency-Key is remembered (its answer replayed)",
    )
    receipt_timeout_seconds: float = Field(
        default=72 * 3600.0, gt=0,
        description="a message still `sent` this long after it was sent becomes undelivered (NO_RECEIPT)",
    )
    outbox_batch: int = 500
    callback_max_attempts: int = 10
    callback_signing_token: SecretStr | None = Field(
        default=None, description="when set, StatusCallback POSTs carry X-Twilio-Signature made with it"
    )
    callback_allow_networks: str = Field(
        default="", description="CIDRs, comma-separated, a StatusCallback may reach although not public",
    )

    @field_validator("callback_allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)  # a typo fails at start, not at the first callback
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlSource(settings_cls))

    @model_validator(mode="after")
    def _routes_name_known_providers(self) -> Settings:
        names = [p.name for p in self.providers]
        if len(names) != len(set(names)):
            raise ValueError("provider names must be unique")
        for route in self.routes:
            for name in route.providers:
                if name not in names:
                    raise ValueError(f"route {route.channel!r} names unknown provider {name!r}")
        return self

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    def admin_api_key_list(self) -> list[str]:
        return [k.strip() for k in self.admin_api_keys.get_secret_value().split(",") if k.strip()]

    def webhook_auth_modes(self) -> list[tuple[str, str]]:
        """`webhook_auth`'s modes as (kind, what follows its first `:`): `("token", "T")`, `("basic",
        "USER:PASSWORD")`, `("twilio-signature", "")`, `("none", "")`. app/api/webhook_auth.py judges them."""
        modes = (m.strip() for m in self.webhook_auth.split(","))
        return [(kind, rest) for kind, _, rest in (m.partition(":") for m in modes if m)]

    def callback_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.callback_allow_networks)

    def broker_urls(self) -> list[str]:
        return [u.strip() for u in self.broker_url.split(",") if u.strip()]

    def provider(self, name: str) -> SmppProviderConfig | HttpProviderConfig:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def channels(self) -> set[str]:
        return {r.channel for r in self.routes}
