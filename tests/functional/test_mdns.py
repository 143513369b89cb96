"""A school server's `hub serve` announces itself with mDNS/DNS-SD; an upstream's does not.

The announcement is checked the way a teacher's device finds it: a zeroconf browser
(another process's view: its own Zeroconf instance) resolves the _http._tcp record
and the NAME.local host, then opens the page at the address and port it got. The
server listens on 127.0.0.1, so the multicast stays on loopback (which this sandbox
carries; where a host has no multicast at all, the browser gets nothing and this fails).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from hub.config import Settings
from hub.sync import manifest as mf
from hub.sync import mdns
from tests.functional.conftest import LiveServer, wait_until


@pytest.mark.parametrize(
    ("upstream", "setting", "announced"),
    [
        ("https://hub.example.cn", "auto", True),  # a school server: on by default
        ("", "auto", False),  # an upstream hub: off by default
        ("", "on", True),
        ("https://hub.example.cn", "off", False),
    ],
)
def test_the_on_off_rule(tmp_path: Path, upstream: str, setting: str, announced: bool) -> None:
    key = mf.public_key_text(mf.generate_private_key())
    settings = Settings.load(
        {
            "HUB_DATA_DIR": str(tmp_path),
            "HUB_UPSTREAM_URL": upstream,
            "HUB_UPSTREAM_PUBLIC_KEY": key,
            "HUB_MDNS": setting,
        }
    )
    assert mdns.enabled(settings) is announced


def test_the_service_record() -> None:
    info = mdns.service_info("shancun", 8000, ["192.168.1.23"])
    assert info.type == "_http._tcp.local."
    assert info.name == "shancun._http._tcp.local."
    assert info.server == "shancun.local."
    assert (info.port, info.parsed_addresses(), info.properties) == (8000, ["192.168.1.23"], {b"path": b"/"})


def test_bad_names_are_refused(tmp_path: Path) -> None:
    from hub.config import ConfigError

    with pytest.raises(ConfigError, match="HUB_MDNS_NAME"):
        Settings.load({"HUB_DATA_DIR": str(tmp_path), "HUB_MDNS_NAME": "山村"})
    assert Settings.load({"HUB_DATA_DIR": str(tmp_path), "HUB_MDNS_NAME": "Shancun.local"}).mdns_name == "shancun"


def test_a_school_server_is_found_on_the_lan_by_name(hub_env: dict[str, str], tmp_path: Path) -> None:
    zeroconf = pytest.importorskip("zeroconf")
    name = f"h5-{uuid.uuid4().hex[:8]}"  # unique: other test runs may announce on the same host
    key = mf.public_key_text(mf.generate_private_key())
    env = {**hub_env, "HUB_UPSTREAM_URL": "https://hub.example.cn", "HUB_UPSTREAM_PUBLIC_KEY": key}
    server = LiveServer({**env, "HUB_MDNS_NAME": name}, tmp_path)
    browser = zeroconf.Zeroconf(interfaces=["127.0.0.1"], ip_version=zeroconf.IPVersion.V4Only)
    try:
        announced = f"announced on the LAN as http://{name}.local:{server.port}/"
        wait_until(lambda: announced in server.process.output(), 30, "the announcement")
        info = browser.get_service_info(mdns.SERVICE_TYPE, f"{name}.{mdns.SERVICE_TYPE}", timeout=10_000)
        assert info is not None, "no answer to the DNS-SD query"
        assert info.server == f"{name}.local." and info.port == server.port
        # NAME.local resolves to the address, as a browser resolves the URL a teacher types.
        host = zeroconf.AddressResolverIPv4(f"{name}.local.")
        assert host.request(browser, 10_000)
        [address] = host.parsed_addresses()
        page = requests.get(f"http://{address}:{info.port}/", headers={"Accept-Language": "zh"}, timeout=30)
        assert "本校服务器" in page.text  # the school server's own pages
    finally:
        browser.close()
        server.process.stop()


def test_an_upstream_hub_does_not_announce(hub_env: dict[str, str], tmp_path: Path) -> None:
    server = LiveServer(hub_env, tmp_path)
    try:
        assert "announced on the LAN" not in server.process.output()
    finally:
        server.process.stop()
