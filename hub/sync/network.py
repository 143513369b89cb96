"""Why the upstream could not be reached, in a few words a teacher can read.

A socket's own words ("[Errno 111] Connection refused", "[SSL: CERTIFICATE_VERIFY_FAILED]
...", "timed out") are English and mean little to the admin of a rural school server,
who reads the sync page and ``hub sync status`` in Chinese. Every low-level failure of a
transfer is therefore one of the few reasons below, each a catalog message; the
exception's text stays with it as the value ``detail``, which no template shows: it
goes to the log and to a run's English column (hub.errors.english) for the technician
who has to look it up.
"""

from __future__ import annotations

import errno
import http.client
import logging
import socket
import ssl

from hub.errors import Text
from hub.i18n import N_

log = logging.getLogger(__name__)

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EADDRNOTAVAIL}
_CUT = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, http.client.IncompleteRead)


def reason(exc: BaseException, where: str = "") -> Text:
    """One short, translated reason for a failed transfer; the exception's own text kept as ``detail``."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if where:
        detail = f"{where}: {detail}"
    log.info("upstream transfer failed: %s", detail)
    return Text(_template(exc), detail=detail)


def _template(exc: BaseException) -> str:
    # Most specific first: the TLS and DNS errors are OSErrors too, RemoteDisconnected a reset.
    if isinstance(exc, ssl.SSLCertVerificationError):
        return N_("the upstream's certificate could not be verified (TLS)")
    if isinstance(exc, ssl.SSLError):
        return N_("the secure connection (TLS) to the upstream failed")
    if isinstance(exc, socket.gaierror):
        return N_("the upstream's name could not be found (DNS)")
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return N_("the upstream did not answer in time")
    if isinstance(exc, ConnectionRefusedError):
        return N_("the upstream refused the connection (is it running?)")
    if isinstance(exc, _CUT):
        return N_("the connection was cut")
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return N_("there is no network route to the upstream")
    if isinstance(exc, http.client.HTTPException):
        return N_("the upstream's answer could not be understood")
    return N_("a network error")


def answered(status: int, detail: str = "") -> Text:
    """What an error status from the upstream means for the reader; the status and its message kept as ``detail``."""
    if status in (401, 403):
        template = N_("the upstream refused this server's token (HTTP %(status)s)")
    elif status == 404:
        template = N_("the upstream does not have it (HTTP %(status)s)")
    elif status == 429 or status == 503:
        template = N_("the upstream is busy (HTTP %(status)s); the next pull tries again")
    elif status >= 500:
        template = N_("the upstream had an error (HTTP %(status)s)")
    else:
        template = N_("the upstream refused the request (HTTP %(status)s)")
    return Text(template, status=status, detail=f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
