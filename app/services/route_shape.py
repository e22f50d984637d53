"""What a message will look like on its route's providers: the `Encoding` and `Segments` `/send`
answers, and the 400s for what the route cannot honour (contract §2).

The primary provider of the recipient's route decides `Encoding` and `Segments` (it is what sends
and bills unless it fails over). An explicit Encoding or Flash must be honoured by every provider of
the route (a failover must not silently drop it), and at least one provider must have a sender when
the request gives no `From`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.config import HttpProviderConfig, Settings
from app.domain.capability import CAPABILITIES, SMPP, SMPP_LATIN1, Capability, CapabilityError
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.routing import Route, providers_for


@dataclass(slots=True)
class Shape:
    encoding: Encoding
    segments: int


@dataclass(frozen=True, slots=True)
class _Table:
    """What the settings say about routes, read once: a request only looks things up here."""

    routes: tuple[Route, ...]
    channels: frozenset[str]
    capabilities: dict[str, tuple[Capability, bool]]  # provider name: its capability, has a default sender


# Keyed by the objects themselves (held, so an id is never reused while cached): a Settings whose
# routes or providers are replaced gets a new table.
_TABLES: dict[tuple[int, int, int], tuple[tuple[object, ...], _Table]] = {}


def _table(settings: Settings) -> _Table:
    routes, providers = settings.routes, settings.providers
    key = (id(settings), id(routes), id(providers))
    hit = _TABLES.get(key)
    if hit is not None and hit[0][0] is settings and hit[0][1] is routes and hit[0][2] is providers:
        return hit[1]
    owners = (settings, routes, providers)
    table = _Table(tuple(Route(r.channel, r.prefix, tuple(r.providers)) for r in settings.routes),
                   frozenset(r.channel for r in settings.routes),
                   {p.name: _capability(settings, p.name) for p in settings.providers})
    if len(_TABLES) > 64:  # tests build many Settings; a process has one
        _TABLES.clear()
    _TABLES[key] = (owners, table)
    return table


def channels(settings: Settings) -> frozenset[str]:
    """The channels the routes name (`settings.channels`, without building the set each time)."""
    return _table(settings).channels


def _capability(settings: Settings, name: str) -> tuple[Capability, bool]:
    """The provider's capability and whether it has a default sender."""
    cfg = settings.provider(name)
    if isinstance(cfg, HttpProviderConfig):
        return CAPABILITIES[cfg.dialect], bool(cfg.default_from)
    return (SMPP_LATIN1 if cfg.latin1 else SMPP), bool(cfg.default_from)


def _route_label(channel: str, to: str, routes: Sequence[Route]) -> str:
    best = max((r for r in routes if r.channel == channel and to.startswith(r.prefix)),
               key=lambda r: len(r.prefix), default=None)
    return f"{channel!r}" + (f" (prefix {best.prefix})" if best and best.prefix else "")


def shapes(settings: Settings, channel: str, recipients: Sequence[str], body: str,
           requested: Encoding | None, flash: bool, mode: LongMessageMode, sender: str | None,
           default: Shape) -> list[Shape]:
    """One Shape per recipient; raises CapabilityError naming the field, the route and the provider.
    Each distinct route (provider list) is worked out once per request."""
    table = _table(settings)
    routes = table.routes
    by_route: dict[tuple[str, ...], Shape] = {}
    out: list[Shape] = []
    for to in recipients:
        names = providers_for(routes, channel, to)
        shape = by_route.get(names)
        if shape is None:
            try:
                shape = by_route[names] = _shape(table, names, body, requested, flash, mode, sender, default)
            except CapabilityError as exc:
                # Named only now: the label is worth its cost on a refusal alone.
                raise CapabilityError(exc.field, f"route {_route_label(channel, to, routes)}{exc}") from None
        out.append(shape)
    return out


def _shape(table: _Table, names: tuple[str, ...], body: str, requested: Encoding | None, flash: bool,
           mode: LongMessageMode, sender: str | None, default: Shape) -> Shape:
    """The Shape on the route `names`; a CapabilityError's text follows the route's name."""
    if not names:
        return default  # no route: the dispatcher fails it with NO_ROUTE
    caps = [table.capabilities[n] for n in names]
    if sender is None and all(cap.needs_sender and not has_from for cap, has_from in caps):
        raise CapabilityError("From", f" has no default sender and its providers ({', '.join(names)}) "
                                      f"need one: give From")
    first: Shape | None = None
    for name, (cap, _) in zip(names, caps, strict=True):
        try:
            encoding, segments = cap.outgoing(body, requested, flash, mode)
        except CapabilityError as exc:
            raise CapabilityError(exc.field, f", provider {name}: {exc}") from None
        first = first or Shape(encoding, segments)
    assert first is not None
    return first

