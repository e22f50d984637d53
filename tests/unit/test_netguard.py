"""The SSRF rules for StatusCallback URLs (app/domain/netguard.py): every numeric spelling is judged as
the address it is; private, loopback, link-local, CGNAT, multicast and IPv6 local ranges are refused
unless the operator allowed the network."""

from __future__ import annotations

import ipaddress

import pytest

from app.domain.netguard import (
    CallbackRefused,
    check_addresses,
    host_address,
    is_allowed,
    parse_callback_url,
    parse_networks,
)

# The forms issue 12 found accepted (and POSTed to), and a few more spellings of the same places.
REFUSED_HOSTS = {
    "http://127.0.0.1:55432/": "127.0.0.1", "http://169.254.169.254/latest/meta-data": "169.254.169.254",
    "http://[::1]/": "::1", "http://10.0.0.1/": "10.0.0.1", "http://2130706433/": "127.0.0.1",
    "http://0x7f000001/": "127.0.0.1", "http://0/": "0.0.0.0", "http://127.1/": "127.0.0.1",
    "http://0177.0.0.1/": "127.0.0.1", "http://127.0.0.1./": "127.0.0.1", "http://0x7f.1/": "127.0.0.1",
    "http://172.16.5.4/": "172.16.5.4", "http://192.168.1.1/": "192.168.1.1", "http://100.64.0.1/": "100.64.0.1",
    "http://224.0.0.251/": "224.0.0.251", "http://255.255.255.255/": "255.255.255.255",
    "http://[fc00::1]/": "fc00::1", "http://[fd12:3456::1]/": "fd12:3456::1", "http://[fe80::1]/": "fe80::1",
    "http://[::ffff:127.0.0.1]/": "::ffff:127.0.0.1", "http://[::ffff:a00:1]/": "::ffff:10.0.0.1",
    "http://[::127.0.0.1]/": "::127.0.0.1", "http://[64:ff9b::a9fe:a9fe]/": "64:ff9b::169.254.169.254",
    "http://[2002:a00:1::]/": "2002:a00:1::", "http://[ff02::1]/": "ff02::1", "http://[::]/": "::",
}


@pytest.mark.parametrize("url", sorted(REFUSED_HOSTS))
def test_every_spelling_of_a_non_public_address_is_refused(url: str) -> None:
    target = parse_callback_url(url)
    assert target.address == ipaddress.ip_address(REFUSED_HOSTS[url])
    assert not is_allowed(target.address)
    with pytest.raises(CallbackRefused, match="not a public address"):
        check_addresses(target, [target.address])


@pytest.mark.parametrize("url", ["http://8.8.8.8/cb", "https://93.184.215.14:8443/x?y=1",
                                 "http://[2606:4700:4700::1111]/", "http://[::ffff:8.8.8.8]/",
                                 "http://[64:ff9b::808:808]/", "http://134744072/"])
def test_public_addresses_are_allowed(url: str) -> None:
    target = parse_callback_url(url)
    assert target.address is not None and is_allowed(target.address)


@pytest.mark.parametrize("url", ["http://user:pw@8.8.8.8/", "http://user@8.8.8.8/", "http://:pw@8.8.8.8/",
                                 "https://a@b@8.8.8.8/"])
def test_userinfo_is_refused(url: str) -> None:
    with pytest.raises(CallbackRefused, match="credentials"):
        parse_callback_url(url)


@pytest.mark.parametrize("url", ["ftp://8.8.8.8/", "http://", "http://[::1", "http://8.8.8.8:99999/", "file:///etc",
                                 "http://1.2.3.4.5/", "http://256.1.1.1/", "http://08.1.1.1/", "http://4294967296/",
                                 "javascript:alert(1)"])
def test_malformed_urls_and_hosts_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        parse_callback_url(url)


def test_length_is_capped_at_2048_characters() -> None:
    base = "https://8.8.8.8/"
    assert parse_callback_url(base + "x" * (2048 - len(base)))
    with pytest.raises(CallbackRefused, match="2048"):
        parse_callback_url(base + "x" * (2049 - len(base)))


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    target = parse_callback_url("https://hooks.example/cb")
    assert target.address is None and host_address("hooks.example") is None
    public, private = ipaddress.ip_address("8.8.4.4"), ipaddress.ip_address("10.1.2.3")
    assert check_addresses(target, [public]) == public
    with pytest.raises(CallbackRefused, match=r"resolves to 10\.1\.2\.3"):
        check_addresses(target, [public, private])  # whichever one a connect would pick
    with pytest.raises(CallbackRefused, match="does not resolve"):
        check_addresses(target, [])


def test_operator_allowed_networks_open_private_ranges_only_as_listed() -> None:
    allow = parse_networks("10.20.0.0/16, 127.0.0.1/32,::1")
    assert is_allowed(ipaddress.ip_address("10.20.3.4"), allow)
    assert is_allowed(ipaddress.ip_address("127.0.0.1"), allow)
    assert is_allowed(ipaddress.ip_address("::1"), allow)
    assert is_allowed(ipaddress.ip_address("::ffff:10.20.3.4"), allow)
    assert not is_allowed(ipaddress.ip_address("10.21.0.1"), allow)
    assert not is_allowed(ipaddress.ip_address("127.0.0.2"), allow)
    assert not is_allowed(ipaddress.ip_address("169.254.169.254"), allow)
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")
