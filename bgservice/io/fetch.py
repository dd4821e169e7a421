"""Safe fetching: the one module that decides which URLs may be read and reads them.

The service fetches ``videoUrl`` and ``imageUrl`` for strangers. Nothing a stranger sends may reach the
private network, the local disk, or hold a worker forever. The rules (README "Safe fetching"):

**At submit** (no DNS, no I/O) -- :func:`check_source_url`. A source is

- an ``http``/``https`` URL without userinfo whose host is a name, or a public literal address (a
  literal is parsed in every notation a resolver accepts: ``127.1``, ``2130706433``, ``0x7f.1``,
  ``0177.0.0.1``, ``[::ffff:127.0.0.1]``, NAT64 ``64:ff9b::/96`` and 6to4 ``2002::/16`` forms ...;
  ``localhost`` and ``*.localhost`` count as loopback);
- an asset id ``asset_…`` (resolved by the API to its own storage);
- an object-store URL (``s3://`` ...) under one of ``BGSERVICE_ALLOWED_INPUT_PREFIXES``.

Anything else -- a local path, ``file://``, another protocol, a chained fsspec URL (``a::b``) -- is
:class:`~bgservice.errors.UrlNotAllowed` (``url_not_allowed``, 422) naming the request ``field``.

**At fetch** -- :func:`fetch_to_local`. http(s) is downloaded by this module's own client (never by
ffmpeg, PyAV or fsspec's http filesystem). The address guard is `ssrfguard
<https://pypi.org/project/ssrfguard/>`_, plugged in as an httpcore network backend: the host is
resolved once, every answer is checked (loopback, private, link-local incl. 169.254.169.254, CGNAT
100.64/10, multicast, unspecified, reserved, documentation, and the IPv4-mapped / NAT64 / 6to4 /
IPv4-compatible forms of them), and the socket is connected to an address that was checked -- there is
no second lookup to rebind, and TLS (SNI, certificate) still uses the host name. Redirects are followed
by hand, at most :data:`MAX_REDIRECTS`, each hop checked like the first, each a fresh ``GET`` carrying
no credentials. The body is streamed into scratch under a byte cap (``BGSERVICE_MAX_INPUT_BYTES`` for a
video, ``BGSERVICE_MAX_BACKGROUND_IMAGE_BYTES`` for an image -> ``input_too_large``) and a deadline
(``BGSERVICE_FETCH_TIMEOUT_SECONDS``: the lookup, every connect, read and write are cut to the time
left, so a server that never answers or trickles forever ends by then -> ``fetch_failed``).
``BGSERVICE_ALLOWED_PRIVATE_NETS`` exempts an operator's internal media server;
``BGSERVICE_ALLOW_PRIVATE_URLS=true`` lifts the address rule (local use). A refused address is never
sent a byte: the refusal happens before its socket is opened.

Errors: refused URL or address (at submit, after resolution, on a redirect) -> ``url_not_allowed``;
remote 4xx/5xx, timeouts, connection errors, DNS failure, more than 5 redirects, object-store errors ->
``fetch_failed`` (502; a retry may succeed); over the byte cap -> ``input_too_large`` -- never
``invalid_input``, which stays for files that are fetched but are not videos.

Every byte received (http(s)) or copied (object stores) is counted in
:data:`bgservice.counters.FETCHED_BYTES` (``bgservice_fetched_bytes_total`` on ``/metrics``).

API (what the HTTP API and the runner call)::

    from bgservice.io.fetch import check_source_url, fetch_to_local

    # at submit, for each URL field (422 url_not_allowed with field=... on refusal)
    src = check_source_url(body.videoUrl, settings, field="videoUrl")   # -> SourceUrl(kind, url, field)

    # in the job, before the media stage (the media stage only ever sees the local path)
    with fetch_to_local(url, settings, kind="video", field="videoUrl",
                        resolve_asset=lambda asset_id: store.asset_url(asset_id)) as path:
        ...                                                             # path: a local file in scratch
    with fetch_to_local(image_url, settings, kind="image", field="imageUrl", ...) as image_path:
        ...

``resolve_asset`` maps an asset id to the service's own storage URL (a local path or an object-store
URL); that URL is the service's, so it is opened without the stranger rules. The CLI and batch use
:func:`bgservice.storage.local_input` (:func:`open_trusted`): local paths and any fsspec URL, http(s)
still through this downloader (with its caps and pinning) but without the address rule.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fsspec
import httpcore
import httpx
from ssrfguard import AddressTable, Policy
from ssrfguard.errors import BlockedAddressError, BlockedURLError, SSRFGuardError
from ssrfguard.httpx import SafeBackend

from bgservice.counters import FETCHED_BYTES
from bgservice.errors import (
    BgServiceError,
    FetchFailed,
    InputTooLarge,
    InvalidAsset,
    InvalidInput,
    UrlNotAllowed,
)
from bgservice.io.paths import LOCAL_PROTOCOLS, OBJECT_STORE_PROTOCOLS, is_local, local_path, scratch_dir
from bgservice.settings import Settings

MAX_REDIRECTS = 5
HTTP_SCHEMES = frozenset({"http", "https"})
ASSET_ID = re.compile(r"^asset_[A-Za-z0-9_-]{1,128}$")
_CHUNK = 1024 * 1024
_ALL_PORTS = frozenset(range(1, 65536))
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")
_USER_AGENT = "bgservice-fetch/1"

SourceKind = Literal["http", "asset", "object_store"]
Kind = Literal["video", "image"]
Resolver = Callable[[str], Sequence[str]]
"""A stand-in for DNS (tests): host name -> IP address strings. Whatever it answers is checked."""


@dataclass(frozen=True)
class SourceUrl:
    """A source that passed the submit-time rules: ``kind`` says how it will be fetched."""

    kind: SourceKind
    url: str
    field: str | None = None


# ----------------------------------------------------------------------------------------------------
# addresses


def parse_ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a resolver would read ``host`` as without DNS, or ``None`` for a name.

    IPv6 in brackets or bare (zone ids kept), and IPv4 the way ``inet_aton`` reads it: 1 to 4 parts,
    each decimal, octal (leading ``0``) or hex (``0x``), the last part filling the remaining bytes
    (``127.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``). Full-width digits are folded (NFKC) first.
    Raises ValueError for a host made only of numeric parts that no resolver could read as an address.
    """
    text = unicodedata.normalize("NFKC", host).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv6 address") from None
    text = text.removesuffix(".")
    parts = text.split(".")
    if not text or not all(_NUMERIC_LABEL.match(p) for p in parts):
        return None
    if len(parts) > 4:
        raise ValueError(f"{host!r} is made of numbers but is not an address")
    values: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c in "89" for c in part):
                raise ValueError(f"{host!r} is made of numbers but is not an address")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        raise ValueError(f"{host!r} is made of numbers but is not an address")
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def address_policy(settings: Settings, *, trusted: bool = False) -> Policy:
    """The address guard: private, loopback, link-local, CGNAT, multicast, reserved ... refused, except
    ``BGSERVICE_ALLOWED_PRIVATE_NETS``; nothing refused when ``trusted`` (CLI, batch) or
    ``BGSERVICE_ALLOW_PRIVATE_URLS=true``. Any port; at most :data:`MAX_REDIRECTS` redirects."""
    open_table = trusted or settings.allow_private_urls
    return Policy(
        denied_networks=AddressTable(()) if open_table else Policy().denied_networks,
        allowed_networks=settings.allowed_private_nets,
        allowed_ports=_ALL_PORTS,
        max_redirects=MAX_REDIRECTS,
        max_connection_attempts=2,
    )


def _reason(exc: SSRFGuardError) -> str:
    """Why the guard refused, without echoing the URL (it may carry credentials)."""
    if isinstance(exc, BlockedURLError):
        return exc.reason
    return str(exc)  # an address refusal names the address and its block


def _refused(message: str, field: str | None, cause: BaseException | None = None) -> UrlNotAllowed:
    err = UrlNotAllowed(message, field=field)
    err.__cause__ = cause
    return err


def check_http_url(url: str, policy: Policy, *, field: str | None = None) -> str:
    """Refuse an http(s) URL the rules refuse before any DNS: wrong scheme, userinfo, a literal address
    (any notation) or ``localhost`` the policy denies. Returns the URL as httpx will send it."""
    try:
        policy.check_url(url)
    except SSRFGuardError as exc:
        raise _refused(f"URL not allowed: {_reason(exc)}", field, exc) from exc
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise _refused(f"malformed URL: {exc}", field, exc) from exc
    if parsed.scheme not in HTTP_SCHEMES:
        raise _refused(f"only http and https URLs are fetched, not {parsed.scheme!r}", field)
    if parsed.userinfo:
        raise _refused("credentials in a URL are not accepted", field)
    host = parsed.host
    if not host:
        raise _refused("the URL has no host", field)
    try:
        literal = parse_ip_literal(host)
    except ValueError as exc:
        raise _refused(f"URL not allowed: {exc}", field, exc) from exc
    lowered = host.lower().rstrip(".")
    if literal is not None:
        candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [literal]
    elif lowered == "localhost" or lowered.endswith(".localhost"):
        candidates = [ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")]
    else:
        candidates = []
    for address in candidates:
        try:
            policy.check_address(address)
        except BlockedAddressError as exc:
            raise _refused(f"URL not allowed: host {host} means {address}: {exc.reason}", field, exc) from exc
    return str(parsed)


def check_source_url(url: str, settings: Settings, *, field: str | None = None) -> SourceUrl:
    """Decide at submit what is decidable without DNS; refused -> ``UrlNotAllowed`` naming ``field``."""
    if not isinstance(url, str) or not url.strip():
        raise UrlNotAllowed("the URL is empty", field=field)
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise UrlNotAllowed("the URL contains spaces or control characters", field=field)
    if ASSET_ID.match(url):
        return SourceUrl("asset", url, field)
    scheme_match = _SCHEME.match(url)
    if "::" in url and (scheme_match is None or scheme_match.group(1).lower() not in HTTP_SCHEMES):
        raise UrlNotAllowed("chained fsspec URLs (a::b) are not accepted", field=field)
    if scheme_match is None or "://" not in url:
        raise UrlNotAllowed("a local path is not accepted: give an http(s) URL or an asset id", field=field)
    scheme = scheme_match.group(1).lower()
    if scheme in HTTP_SCHEMES:
        return SourceUrl("http", check_http_url(url, address_policy(settings), field=field), field)
    if scheme in LOCAL_PROTOCOLS:
        raise UrlNotAllowed("file:// URLs are not accepted: give an http(s) URL or an asset id", field=field)
    if scheme in OBJECT_STORE_PROTOCOLS:
        _check_object_url(url, settings, field)
        return SourceUrl("object_store", url, field)
    raise UrlNotAllowed(
        f"the {scheme!r} protocol is not accepted: give an http(s) URL or an asset id", field=field
    )


def _check_object_url(url: str, settings: Settings, field: str | None) -> None:
    scheme, _, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    if "@" in bucket or not bucket or "?" in url or "#" in url:
        raise UrlNotAllowed("malformed object-store URL", field=field)
    if any(seg in {".", ".."} for seg in key.split("/")):
        raise UrlNotAllowed("'.' and '..' are not accepted in an object key", field=field)
    normalised = f"{scheme.lower()}://{rest}"
    for prefix in settings.allowed_input_prefixes:
        p_scheme, _, p_rest = prefix.partition("://")
        base = f"{p_scheme.lower()}://{p_rest}"
        if p_scheme.lower() not in OBJECT_STORE_PROTOCOLS:
            continue
        directory = base if base.endswith("/") else base + "/"
        if normalised.startswith(directory) and len(normalised) > len(directory):
            return
    listed = ", ".join(settings.allowed_input_prefixes) or "none configured"
    raise UrlNotAllowed(
        f"object-store URLs must be under BGSERVICE_ALLOWED_INPUT_PREFIXES ({listed})", field=field
    )


# ----------------------------------------------------------------------------------------------------
# the pinned, deadline-bound HTTP client


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, timeout: float | None, exc: type[Exception]) -> float:
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise exc(f"the fetch deadline of {self.seconds:g} s passed")
        return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """httpcore's own stream (from the guard's backend), every operation cut to the time left."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # server_hostname is httpcore's (the URL's host), never the pinned address: SNI and the
        # certificate check stay on the name
        left = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """ssrfguard's SafeBackend (resolve once, check every answer, connect to a checked address) with
    the connect cut to the time left and the stream wrapped in :class:`_DeadlineStream`."""

    def __init__(self, inner: SafeBackend, deadline: _Deadline, attempts: int) -> None:
        self._inner = inner
        self._deadline = deadline
        self._attempts = attempts

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline.left(timeout, httpcore.ConnectTimeout) / self._attempts
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(0.0, self._deadline.end - time.monotonic())))


class _Lookup:
    """``getaddrinfo`` for the guard: the injected resolver, or the system's run in a daemon thread so
    that a stalled lookup cannot outlive the deadline. Called once per connection; never twice."""

    def __init__(self, resolver: Resolver | None, deadline: _Deadline) -> None:
        self._resolver = resolver
        self._deadline = deadline

    def __call__(
        self, host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[tuple[Any, ...]]:
        if flags & socket.AI_NUMERICHOST:  # a literal address: nothing to look up
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        if self._resolver is not None:
            rows: list[tuple[Any, ...]] = []
            for ip in self._resolver(host):
                if ":" in ip:
                    rows.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
                else:
                    rows.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
            if not rows:
                raise socket.gaierror(f"{host} does not resolve")
            return rows
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["rows"] = socket.getaddrinfo(host, port, family, type, proto, flags)
            except OSError as exc:
                result["error"] = exc

        worker = threading.Thread(target=run, name="bgservice-dns", daemon=True)
        worker.start()
        worker.join(self._deadline.left(None, TimeoutError))
        if worker.is_alive():
            raise TimeoutError(f"looking up {host} took longer than the fetch deadline")
        if "error" in result:
            raise result["error"]
        rows_out: list[tuple[Any, ...]] = result["rows"]
        return rows_out


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose every socket comes from :class:`_DeadlineBackend`;
    each request's URL is checked by the guard first (scheme, userinfo, literal addresses)."""

    def __init__(self, policy: Policy, resolver: Resolver | None, deadline: _Deadline) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        self._policy = policy
        backend = SafeBackend(policy=policy, resolver=_Lookup(resolver, deadline))
        # replaces the pool httpx built (the same move as ssrfguard's own SafeTransport) so that the
        # pinning backend is the only way this transport opens a socket
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=2,
            network_backend=_DeadlineBackend(backend, deadline, policy.max_connection_attempts),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_url(str(request.url))
        return super().handle_request(request)


def download(
    url: str,
    dest: Path,
    settings: Settings,
    *,
    max_bytes: int,
    limit_name: str,
    field: str | None = None,
    what: str = "input",
    trusted: bool = False,
    resolver: Resolver | None = None,
) -> int:
    """Download the http(s) ``url`` into ``dest`` under every rule of the module; return the byte count.

    ``trusted`` (CLI, batch) drops the address rule only: pinning, redirects, caps and deadline stay.
    """
    policy = address_policy(settings, trusted=trusted)
    timeout = settings.fetch_timeout_seconds
    deadline = _Deadline(timeout)
    transport = _PinnedTransport(policy, resolver, deadline)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    current = url
    with httpx.Client(
        transport=transport, follow_redirects=False, trust_env=False, timeout=timeout, headers=headers
    ) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            current = check_http_url(current, policy, field=field)
            client.cookies.clear()  # nothing a previous hop set travels to the next one
            try:
                with client.stream("GET", current) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchFailed(
                                f"{what}: HTTP {response.status_code} redirect without a Location"
                            )
                        # a fresh GET to the next hop: no Authorization, cookies or userinfo are carried
                        current = str(response.url.join(location))
                        continue
                    if response.status_code >= 400:
                        raise FetchFailed(f"{what}: the server answered HTTP {response.status_code}")
                    if not 200 <= response.status_code < 300:
                        raise FetchFailed(f"{what}: unexpected HTTP {response.status_code}")
                    return _save(
                        response, dest, deadline, max_bytes=max_bytes, limit_name=limit_name, what=what
                    )
            except SSRFGuardError as exc:
                raise UrlNotAllowed(f"{what} URL not allowed: {_reason(exc)}", field=field) from exc
            except httpx.TimeoutException as exc:
                raise FetchFailed(
                    f"{what}: no complete answer within {timeout:g} s (BGSERVICE_FETCH_TIMEOUT_SECONDS)"
                ) from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise FetchFailed(
                    f"{what} cannot be fetched: {type(exc).__name__}: {_first_line(exc)}"
                ) from exc
    raise FetchFailed(f"{what}: more than {MAX_REDIRECTS} redirects")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def _save(
    response: httpx.Response, dest: Path, deadline: _Deadline, *, max_bytes: int, limit_name: str, what: str
) -> int:
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise InputTooLarge(f"{what} is {int(length)} bytes, the limit is {max_bytes} ({limit_name})")
    written = 0
    with open(dest, "wb") as out:
        for chunk in response.iter_bytes(_CHUNK):
            written += len(chunk)
            FETCHED_BYTES.add(len(chunk))
            if written > max_bytes:
                raise InputTooLarge(f"{what} is over the limit of {max_bytes} bytes ({limit_name})")
            if time.monotonic() > deadline.end:  # a trickle that never ends stops here
                raise FetchFailed(
                    f"{what}: not complete within {deadline.seconds:g} s (BGSERVICE_FETCH_TIMEOUT_SECONDS)"
                )
            out.write(chunk)
    return written


# ----------------------------------------------------------------------------------------------------
# object stores (fsspec) and the entry points


def copy_object(url: str, dest: Path, *, max_bytes: int, limit_name: str, what: str = "input") -> int:
    """Copy an fsspec object into ``dest`` under the byte cap. A remote failure (missing object, access
    denied, network) is ``fetch_failed``; an unknown protocol ``invalid_input``."""
    try:
        fs, path_in_fs = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as exc:
        raise InvalidInput(f"unsupported URL {url!r}: {exc}") from exc
    try:
        info = fs.info(path_in_fs)
        size = info.get("size")
        if size is not None and int(size) > max_bytes:
            raise InputTooLarge(f"{what} is {size} bytes, the limit is {max_bytes} ({limit_name})")
        copied = 0
        with fs.open(path_in_fs, "rb") as src, open(dest, "wb") as dst:
            while block := src.read(_CHUNK):
                copied += len(block)
                FETCHED_BYTES.add(len(block))
                if copied > max_bytes:
                    raise InputTooLarge(f"{what} is over the limit of {max_bytes} bytes ({limit_name})")
                dst.write(block)
        return copied
    except BgServiceError:
        raise
    except FileNotFoundError as exc:
        raise FetchFailed(f"{what} not found: {url}") from exc
    except Exception as exc:
        # OSError from most stores, but not every remote failure is one: botocore's
        # EndpointConnectionError / NoCredentialsError (what s3fs raises for an unreachable endpoint or
        # missing credentials) are plain Exceptions. Any of them is the store failing, not the user.
        raise FetchFailed(f"{what} cannot be read: {url}: {type(exc).__name__}: {_first_line(exc)}") from exc


def limits_for(settings: Settings, kind: Kind) -> tuple[int, str, str]:
    """(byte cap, its setting's name, what it is) for a video or an image."""
    if kind == "image":
        return settings.max_background_image_bytes, "BGSERVICE_MAX_BACKGROUND_IMAGE_BYTES", "background image"
    return settings.max_input_bytes, "BGSERVICE_MAX_INPUT_BYTES", "input"


def _suffix(url: str) -> str:
    path = urllib.parse.urlsplit(url).path if "://" in url else url
    suffix = Path(path).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""


@contextlib.contextmanager
def fetch_to_local(
    url: str,
    settings: Settings,
    *,
    kind: Kind = "video",
    field: str | None = None,
    resolver: Resolver | None = None,
    resolve_asset: Callable[[str], str] | None = None,
) -> Iterator[str]:
    """The service's one way in: yield a local file in scratch holding the source at ``url`` (a
    stranger's ``videoUrl`` / ``imageUrl``), applying every rule of this module; removed on exit.

    ``kind`` picks the byte cap; ``field`` is named by ``url_not_allowed``; ``resolver`` replaces DNS
    (tests); ``resolve_asset`` maps an asset id to the service's own storage URL (else an asset id is
    ``invalid_asset``).
    """
    field = field or ("imageUrl" if kind == "image" else "videoUrl")
    source = check_source_url(url, settings, field=field)
    max_bytes, limit_name, what = limits_for(settings, kind)
    if source.kind == "asset":
        if resolve_asset is None:
            raise InvalidAsset("asset ids are not accepted here", field=field)
        with open_trusted(
            resolve_asset(source.url), settings, max_bytes=max_bytes, limit_name=limit_name, what=what
        ) as path:
            yield path
        return
    with scratch_dir(settings, prefix="bgservice-in-") as scratch:
        target = scratch / f"{kind}{_suffix(source.url)}"
        if source.kind == "http":
            download(
                source.url,
                target,
                settings,
                max_bytes=max_bytes,
                limit_name=limit_name,
                field=field,
                what=what,
                resolver=resolver,
            )
        else:
            copy_object(source.url, target, max_bytes=max_bytes, limit_name=limit_name, what=what)
        yield str(target)


@contextlib.contextmanager
def open_trusted(
    url: str,
    settings: Settings,
    *,
    max_bytes: int | None = None,
    limit_name: str = "BGSERVICE_MAX_INPUT_BYTES",
    error: type[BgServiceError] = InvalidInput,
    what: str = "input",
    resolver: Resolver | None = None,
) -> Iterator[str]:
    """The CLI's and batch's way in (their user owns the machine): a local path is used in place
    (missing -> ``error``); http(s) goes through :func:`download` without the address rule; any other
    fsspec URL is copied into scratch. Caps and deadline as for the service; remote failures are
    ``fetch_failed``."""
    limit = settings.max_input_bytes if max_bytes is None else max_bytes
    if is_local(url):
        path = local_path(url)
        if not path.is_file():
            raise error(f"{what} not found or not a file: {url}")
        size = path.stat().st_size
        if size > limit:
            raise InputTooLarge(f"{what} is {size} bytes, the limit is {limit} ({limit_name})")
        yield str(path)
        return
    scheme = url.partition("://")[0].lower()
    with scratch_dir(settings, prefix="bgservice-in-") as scratch:
        target = scratch / f"input{_suffix(url)}"
        if scheme in HTTP_SCHEMES:
            download(
                url,
                target,
                settings,
                max_bytes=limit,
                limit_name=limit_name,
                what=what,
                trusted=True,
                resolver=resolver,
            )
        else:
            copy_object(url, target, max_bytes=limit, limit_name=limit_name, what=what)
        yield str(target)
