"""A school server announces itself on its LAN: mDNS/DNS-SD, so teachers type http://NAME.local/.

A school's network has no DNS a teacher could add a name to, and nobody remembers
192.168.1.23 (nor keeps it, with DHCP). Multicast DNS answers ``NAME.local`` from
the machine itself, and the DNS-SD record (``_http._tcp``) lists it in the
browsers and apps that look for web servers on the network. python-zeroconf does
both in a background thread, in pure Python.

The rule (``HUB_MDNS``): ``auto`` announces in mirror mode only, since a school
server is what serves a LAN; an upstream hub on the internet has no LAN to tell.
``on`` and ``off`` force it. The name is ``HUB_MDNS_NAME`` (``hub sync init``
writes one made from the school's name: 山村小学 → shancunxiaoxue), stable across
restarts so bookmarks keep working.

What is announced is where ``hub serve`` listens: every IPv4 address of the
machine for 0.0.0.0, else the one address given (127.0.0.1 reaches only this
machine, which is what a try-out wants and tests use).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from hub.config import Settings
from hub.uploads.terminal import _

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from zeroconf import ServiceInfo

SERVICE_TYPE = "_http._tcp.local."
ANY_HOST = ("", "0.0.0.0", "::")  # noqa: S104 -- what `hub serve --host` means by "every interface"
DEFAULT_NAME = "oer-hub"


def enabled(settings: Settings) -> bool:
    """Whether `hub serve` announces itself: HUB_MDNS, where auto means "in mirror mode"."""
    if settings.mdns == "auto":
        return bool(settings.upstream_url)
    return settings.mdns == "on"


def host_name(settings: Settings) -> str:
    return settings.mdns_name or DEFAULT_NAME


def addresses_for(host: str) -> list[str]:
    """The IPv4 addresses clients reach `hub serve --host host` at."""
    if host in ANY_HOST:
        import ifaddr  # zeroconf's own dependency: the machine's interfaces without a compiler

        found = [
            ip.ip
            for adapter in ifaddr.get_adapters()
            for ip in adapter.ips
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback
        ]
        return sorted(set(found))
    try:
        return [str(ipaddress.IPv4Address(host))]
    except ValueError:
        try:
            return [socket.gethostbyname(host)]
        except OSError:
            return []


def service_info(name: str, port: int, addresses: list[str]) -> ServiceInfo:
    """The DNS-SD record: instance "NAME" of _http._tcp, on host NAME.local, at `addresses`:`port`."""
    from zeroconf import ServiceInfo

    return ServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(a) for a in addresses],
        port=port,
        properties={"path": "/"},  # DNS-SD's convention for _http._tcp: the page to open
        server=f"{name}.local.",
    )


@contextmanager
def announce(settings: Settings, host: str, port: int, out: IO[str]) -> Iterator[ServiceInfo | None]:
    """Announce `hub serve` on the LAN while the block runs (when the rule says so); goodbye packets after."""
    if not enabled(settings):
        yield None
        return
    addresses = addresses_for(host)
    if not addresses:
        print(_("mDNS: not announced (no IPv4 address for %(host)s)", host=host), file=out)
        yield None
        return
    from zeroconf import InterfaceChoice, IPVersion, NonUniqueNameException, Zeroconf

    name = host_name(settings)
    info = service_info(name, port, addresses)
    interfaces = InterfaceChoice.All if host in ANY_HOST else addresses
    try:
        zeroconf = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    except OSError as exc:  # no multicast on this network: the hub still serves, by address
        log.info("mDNS: zeroconf could not start: %s", exc)
        print(_("mDNS: not announced (this network does not carry multicast)"), file=out)
        yield None
        return
    registered = threading.Event()

    def register() -> None:
        try:
            # Another server already answers to this instance name: zeroconf picks "name (2)";
            # the host name stays, and the first server keeps answering NAME.local.
            zeroconf.register_service(info, allow_name_change=True)
        except (NonUniqueNameException, OSError) as exc:
            log.info("mDNS: the service was not registered: %s", exc)
            print(_("mDNS: not announced (the name could not be registered on this network)"), file=out)
            return
        registered.set()
        where = ", ".join(addresses)
        url = f"http://{name}.local{'' if port == 80 else f':{port}'}/"
        print(_("announced on the LAN as %(url)s (%(addresses)s)", url=url, addresses=where), file=out)

    # In the background: probing the name takes some 1.7 s, which the pages need not wait for.
    announcer = threading.Thread(target=register, name="mdns-announce", daemon=True)
    announcer.start()
    try:
        yield info
    finally:
        announcer.join(timeout=5)
        if registered.is_set():
            zeroconf.unregister_service(info)  # goodbye packets: clients forget the name at once
        zeroconf.close()
