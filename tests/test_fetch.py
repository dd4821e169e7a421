"""Safe fetching (bgservice.io.fetch): the URL rules at submit, and the downloader over real HTTP.

Servers are real ``http.server`` instances on loopback addresses: a *canary* on 127.0.0.1 that must never
be hit, and media servers on 127.0.0.2 (allowed through ``BGSERVICE_ALLOWED_PRIVATE_NETS=127.0.0.2/32``
where a test needs a reachable "internal" server). DNS is replaced by an injected resolver where a test
needs a name to point somewhere.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import fsspec
import pytest

from bgservice.errors import FetchFailed, InputTooLarge, InvalidAsset, InvalidInput, UrlNotAllowed
from bgservice.io.fetch import check_source_url, download, fetch_to_local, parse_ip_literal
from bgservice.media.probe import probe
from bgservice.settings import Settings
from bgservice.storage import local_input
from tests.media_factory import MediaFactory

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class Server:
    host: str
    port: int
    hits: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start real HTTP servers: ``serve(host, handler, port=0, tls=None)``; all stopped after the test."""
    running: list[http.server.ThreadingHTTPServer] = []

    def start(host: str, handler: Handler, port: int = 0, tls: ssl.SSLContext | None = None) -> Server:
        record = Server(host, port)

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                record.hits.append(self.path)
                record.headers.append({k.lower(): v for k, v in self.headers.items()})
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    handler(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class S(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            block_on_close = False

        server = S((host, port), H)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        record.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append(server)
        return record

    yield start
    for server in running:
        server.shutdown()
        server.server_close()


def body(data: bytes, content_type: str = "application/octet-stream") -> Handler:
    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return handle


def redirect(location: Callable[[], str], status: int = 302) -> Handler:
    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", location())
        h.send_header("Set-Cookie", "session=hop-secret; Path=/")
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handle


def status(code: int) -> Handler:
    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handle


@pytest.fixture
def canary(serve: Callable[..., Server]) -> Server:
    """A server on 127.0.0.1 that no untrusted URL may ever reach."""
    return serve("127.0.0.1", body(b"SECRET"))


def internal(tmp_path: Path, **extra: object) -> Settings:
    """Settings of an operator who allows an internal media server on 127.0.0.2."""
    values: dict[str, object] = {
        "tmp_dir": tmp_path / "scratch",
        "allowed_private_nets": ["127.0.0.2/32"],
        "fetch_timeout_seconds": 10.0,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Callable[[str], list[str]]:
    def resolve(host: str) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(f"{host}: unknown name")
        return table[host]

    return resolve


# ------------------------------------------------------------------------------------------------------
# literal addresses in every notation (no DNS involved)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.0.0.0x1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("127.0.0.1.", "127.0.0.1"),
        ("\uff11\uff12\uff17.0.0.1", "127.0.0.1"),  # full-width digits
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::1", "::1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_literal_notations_parse_like_a_resolver(host: str, address: str) -> None:
    assert parse_ip_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "0x7f.example", "media-1.cdn.net", "a1"])
def test_names_are_not_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.4.5", "099.0.0.1", "4294967296"])
def test_numeric_hosts_that_are_no_address_are_refused(host: str) -> None:
    with pytest.raises(ValueError):
        parse_ip_literal(host)
    with pytest.raises(UrlNotAllowed):
        check_source_url(f"http://{host}/a.mp4", Settings(), field="videoUrl")


REFUSED_LITERALS = [
    "http://127.0.0.1/a.mp4",
    "http://127.1/a.mp4",
    "http://2130706433/a.mp4",
    "http://0x7f.1/a.mp4",
    "http://0x7f000001/a.mp4",
    "http://0177.0.0.1/a.mp4",
    "http://017700000001/a.mp4",
    "http://127.0.0.1./a.mp4",
    "http://\uff11\uff12\uff17.0.0.1/a.mp4",
    "http://[::1]/a.mp4",
    "http://[::ffff:127.0.0.1]/a.mp4",
    "http://[::ffff:7f00:1]/a.mp4",
    "http://[::7f00:1]/a.mp4",  # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/a.mp4",  # NAT64 of 169.254.169.254
    "http://[64:ff9b::a00:1]/a.mp4",  # NAT64 of 10.0.0.1
    "http://[2002:a9fe:a9fe::1]/a.mp4",  # 6to4 of 169.254.169.254
    "http://[2002:c0a8:101::1]/a.mp4",  # 6to4 of 192.168.1.1
    "http://10.0.0.1/a.mp4",
    "http://10.1/a.mp4",
    "http://172.16.5.4/a.mp4",
    "http://192.168.1.1/a.mp4",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/a.mp4",  # CGNAT
    "http://224.0.0.1/a.mp4",  # multicast
    "http://0.0.0.0/a.mp4",
    "http://0/a.mp4",
    "http://240.0.0.1/a.mp4",  # reserved
    "http://255.255.255.255/a.mp4",
    "http://[::]/a.mp4",
    "http://[fe80::1]/a.mp4",
    "http://[fc00::1]/a.mp4",
    "http://[ff02::1]/a.mp4",
    "http://localhost/a.mp4",
    "http://LOCALHOST:8080/a.mp4",
    "http://media.localhost/a.mp4",
]


@pytest.mark.parametrize("url", REFUSED_LITERALS)
def test_private_literals_are_refused_at_submit(url: str) -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        check_source_url(url, Settings(), field="videoUrl")
    assert caught.value.code == "url_not_allowed"
    assert caught.value.field == "videoUrl"
    assert caught.value.http_status == 422


REFUSED_OTHER = [
    "/etc/passwd",
    "relative/clip.mp4",
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "local:///etc/passwd",
    "simplecache::http://example.com/a.mp4",
    "zip://clip.mp4::s3://media-in/a.zip",
    "ftp://example.com/a.mp4",
    "gopher://example.com/a",
    "memory:///a.mp4",
    "data:video/mp4;base64,AAAA",
    "http://user:secret@example.com/a.mp4",
    "http://example.com@127.0.0.1/a.mp4",
    "https://:@example.com/a.mp4",
    "s3://media-in/a.mp4",  # no prefix configured
    "http:///a.mp4",
    "http://exa mple.com/a.mp4",
    "",
    "asset_",
]


@pytest.mark.parametrize("url", REFUSED_OTHER)
def test_other_sources_are_refused_at_submit(url: str) -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        check_source_url(url, Settings(), field="imageUrl")
    assert caught.value.field == "imageUrl"


def test_refusals_do_not_echo_credentials() -> None:
    for url in ["http://user:hunter2@example.com/a.mp4", "http://user:hunter2@127.0.0.1/a.mp4"]:
        with pytest.raises(UrlNotAllowed) as caught:
            check_source_url(url, Settings(), field="videoUrl")
        assert "hunter2" not in caught.value.message


def test_object_store_prefixes() -> None:
    settings = Settings(allowed_input_prefixes="s3://media-in/,gs://bucket/uploads")  # type: ignore[arg-type]
    ok = check_source_url("s3://media-in/a/clip.mp4", settings, field="videoUrl")
    assert (ok.kind, ok.url) == ("object_store", "s3://media-in/a/clip.mp4")
    assert check_source_url("gs://bucket/uploads/x.mov", settings).kind == "object_store"
    for bad in [
        "s3://media-in-evil/clip.mp4",  # not under the prefix, only sharing its start
        "s3://other/clip.mp4",
        "gs://bucket/uploadsX/clip.mp4",
        "s3://media-in/../other/clip.mp4",
        "s3://media-in/",
        "s3://key:secret@media-in/clip.mp4",
        "s3://media-in/clip.mp4::http://example.com/",
        "gs://media-in/clip.mp4",
    ]:
        with pytest.raises(UrlNotAllowed):
            check_source_url(bad, settings, field="videoUrl")


def test_accepted_sources() -> None:
    s = Settings()
    assert check_source_url("https://cdn.example.com/v/clip.mp4?sig=1", s).kind == "http"
    assert check_source_url("http://8.8.8.8:8080/clip.mp4", s).kind == "http"
    assert check_source_url("http://[2606:4700::1111]/clip.mp4", s).kind == "http"
    asset = check_source_url("asset_3f2a9c_x-Y", s, field="videoUrl")
    assert (asset.kind, asset.url, asset.field) == ("asset", "asset_3f2a9c_x-Y", "videoUrl")


def test_operator_exemptions() -> None:
    nets = Settings(allowed_private_nets="127.0.0.2/32,10.20.0.0/16")  # type: ignore[arg-type]
    check_source_url("http://127.0.0.2:8000/a.mp4", nets)
    check_source_url("http://10.20.3.4/a.mp4", nets)
    with pytest.raises(UrlNotAllowed):
        check_source_url("http://127.0.0.1:8000/a.mp4", nets)
    with pytest.raises(UrlNotAllowed):
        check_source_url("http://10.21.0.1/a.mp4", nets)
    everything = Settings(allow_private_urls=True)
    check_source_url("http://127.0.0.1:8000/a.mp4", everything)
    check_source_url("http://localhost:8000/a.mp4", everything)
    # still never local files or chains
    with pytest.raises(UrlNotAllowed):
        check_source_url("file:///etc/passwd", everything)


def test_bad_settings_are_invalid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from bgservice.errors import InvalidSettings
    from bgservice.settings import get_settings

    for name, value in [
        ("BGSERVICE_ALLOWED_PRIVATE_NETS", "10.0.0.0/33"),
        ("BGSERVICE_ALLOWED_PRIVATE_NETS", "64:ff9b::/96"),  # would switch the NAT64 decoding off
        ("BGSERVICE_ALLOWED_INPUT_PREFIXES", "/data/in"),
        ("BGSERVICE_FETCH_TIMEOUT_SECONDS", "0"),
    ]:
        monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        with pytest.raises(InvalidSettings, match=name):
            get_settings()
        monkeypatch.delenv(name)
    get_settings.cache_clear()


# ------------------------------------------------------------------------------------------------------
# injected resolver: what a name resolves to is checked, once, and that answer is what gets connected


@pytest.mark.parametrize(
    "answer", [["127.0.0.1"], ["10.0.0.1"], ["::ffff:169.254.169.254"], ["8.8.8.8", "10.0.0.1"]]
)
def test_a_public_name_resolving_privately_is_refused(
    answer: list[str], canary: Server, tmp_path: Path, settings: Settings
) -> None:
    url = f"http://media.example.com:{canary.port}/clip.mp4"
    assert check_source_url(url, settings).kind == "http"  # nothing to see at submit
    calls: list[str] = []
    with (
        pytest.raises(UrlNotAllowed) as caught,
        fetch_to_local(
            url, settings, field="videoUrl", resolver=resolver({"media.example.com": answer}, calls)
        ),
    ):
        pass
    assert caught.value.field == "videoUrl"
    assert calls == ["media.example.com"]
    assert canary.hits == []


def test_rebinding_connects_to_the_first_answer_only(serve: Callable[..., Server], tmp_path: Path) -> None:
    """The name first resolves to the allowed 127.0.0.2 and afterwards to 127.0.0.1 (same port): the one
    lookup's answer is the address connected to; the canary on 127.0.0.1 sees nothing."""
    media = serve("127.0.0.2", body(b"the real video"))
    canary = serve("127.0.0.1", body(b"SECRET"), port=media.port)
    answers = iter([["127.0.0.2"]])
    calls: list[str] = []

    def rebinding(host: str) -> list[str]:
        calls.append(host)
        return next(answers, ["127.0.0.1"])

    settings = internal(tmp_path)
    with fetch_to_local(f"http://media.example.com:{media.port}/v.mp4", settings, resolver=rebinding) as path:
        assert Path(path).read_bytes() == b"the real video"
    assert calls == ["media.example.com"]
    assert media.hits == ["/v.mp4"]
    assert media.headers[0]["host"] == f"media.example.com:{media.port}"  # Host stays the name
    assert canary.hits == []


def test_unresolvable_name_is_fetch_failed(canary: Server, settings: Settings) -> None:
    with (
        pytest.raises(FetchFailed),
        fetch_to_local(f"http://nowhere.example:{canary.port}/a.mp4", settings, resolver=resolver({})),
    ):
        pass
    assert canary.hits == []


# ------------------------------------------------------------------------------------------------------
# end to end over real HTTP


def test_canary_is_never_hit(canary: Server, settings: Settings, tmp_path: Path) -> None:
    p = canary.port
    urls = [
        f"http://127.0.0.1:{p}/",
        f"http://localhost:{p}/",
        f"http://[::1]:{p}/",
        f"http://2130706433:{p}/",
        f"http://127.1:{p}/",
        f"http://0x7f.1:{p}/",
        f"http://[::ffff:127.0.0.1]:{p}/",
        "file:///etc/passwd",
        f"simplecache::http://127.0.0.1:{p}/",
        f"http://user:pw@127.0.0.1:{p}/",
    ]
    for url in urls:
        with pytest.raises(UrlNotAllowed), fetch_to_local(url, settings, field="videoUrl"):
            pass
    # the downloader itself refuses too (a hop that skipped submit), real DNS for localhost included
    for url in urls[:3]:
        with pytest.raises(UrlNotAllowed):
            download(url, tmp_path / "x", settings, max_bytes=10**6, limit_name="X")
    assert canary.hits == []
    assert not (tmp_path / "x").exists()


def test_redirect_into_the_canary_is_refused(
    serve: Callable[..., Server], canary: Server, tmp_path: Path
) -> None:
    settings = internal(tmp_path)
    targets = [
        f"http://127.0.0.1:{canary.port}/steal",
        f"http://localhost:{canary.port}/steal",
        f"http://2130706433:{canary.port}/steal",
        f"http://evil.example:{canary.port}/steal",  # a name that resolves to the canary
        "file:///etc/passwd",
        f"http://user:pw@127.0.0.2:{canary.port}/",
    ]
    for target in targets:
        hop = serve("127.0.0.2", redirect(lambda t=target: t))  # type: ignore[misc]
        names = resolver({"evil.example": ["127.0.0.1"], "media.example": ["127.0.0.2"]})
        with (
            pytest.raises(UrlNotAllowed) as caught,
            fetch_to_local(
                f"http://media.example:{hop.port}/v.mp4", settings, field="videoUrl", resolver=names
            ),
        ):
            pass
        assert caught.value.field == "videoUrl"
        assert hop.hits == ["/v.mp4"], target
    assert canary.hits == []


def test_redirects_are_followed_and_capped(serve: Callable[..., Server], tmp_path: Path) -> None:
    settings = internal(tmp_path)
    final = serve("127.0.0.2", body(b"payload"))
    chain: list[Server] = [final]
    for _ in range(5):
        nxt = chain[-1]
        chain.append(serve("127.0.0.2", redirect(lambda n=nxt: n.url("/next"), status=301)))  # type: ignore[misc]
    with fetch_to_local(chain[-1].url("/start.mp4"), settings) as path:  # 5 redirects: fine
        assert Path(path).read_bytes() == b"payload"
    # no Authorization or Cookie travels (each hop set a cookie; none is sent on)
    assert all("authorization" not in h and "cookie" not in h for s in chain for h in s.headers)

    loop = serve("127.0.0.2", redirect(lambda: "/again"))
    with pytest.raises(FetchFailed, match="redirects"), fetch_to_local(loop.url("/start.mp4"), settings):
        pass
    assert len(loop.hits) == 6  # the first request and 5 redirects, never a 6th


def test_relative_redirect_stays_on_the_checked_host(serve: Callable[..., Server], tmp_path: Path) -> None:
    calls: list[str] = []

    def handle(h: http.server.BaseHTTPRequestHandler) -> None:
        (redirect(lambda: "/real.mp4") if h.path == "/v.mp4" else body(b"ok"))(h)

    media = serve("127.0.0.2", handle)
    names = resolver({"media.example": ["127.0.0.2"]}, calls)
    with fetch_to_local(
        f"http://media.example:{media.port}/v.mp4", internal(tmp_path), resolver=names
    ) as path:
        assert Path(path).read_bytes() == b"ok"
    assert media.hits == ["/v.mp4", "/real.mp4"]
    assert media.headers[1]["host"] == f"media.example:{media.port}"


def test_remote_errors_are_fetch_failed(serve: Callable[..., Server], tmp_path: Path) -> None:
    settings = internal(tmp_path)
    for code in (404, 403, 500, 503):
        server = serve("127.0.0.2", status(code))
        with (
            pytest.raises(FetchFailed, match=str(code)) as caught,
            fetch_to_local(server.url("/a.mp4"), settings),
        ):
            pass
        assert caught.value.code == "fetch_failed"
        assert caught.value.http_status == 502
    closed = socket.socket()
    closed.bind(("127.0.0.2", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    with pytest.raises(FetchFailed), fetch_to_local(f"http://127.0.0.2:{port}/a.mp4", settings):
        pass


def test_endless_body_is_input_too_large(serve: Callable[..., Server], tmp_path: Path) -> None:
    def endless(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()  # no Content-Length: the body ends when the connection does (never)
        block = b"\0" * 65536
        while True:
            h.wfile.write(block)

    server = serve("127.0.0.2", endless)
    settings = internal(tmp_path, max_input_bytes=1_000_000, max_background_image_bytes=300_000)
    with (
        pytest.raises(InputTooLarge, match="BGSERVICE_MAX_INPUT_BYTES"),
        fetch_to_local(server.url(), settings),
    ):
        pass
    with (
        pytest.raises(InputTooLarge, match="BGSERVICE_MAX_BACKGROUND_IMAGE_BYTES"),
        fetch_to_local(server.url("/bg.png"), settings, kind="image"),
    ):
        pass
    # an announced length over the cap is refused before the body is read
    big = serve("127.0.0.2", body(b"x" * 2_000_000))
    with pytest.raises(InputTooLarge, match="2000000 bytes"), fetch_to_local(big.url(), settings):
        pass
    assert not any((tmp_path / "scratch").iterdir())  # nothing left in scratch


def test_silent_server_is_fetch_failed_at_the_deadline(tmp_path: Path) -> None:
    """A server that accepts the connection and never answers (the kernel completes the handshake)."""
    silent = socket.socket()
    silent.bind(("127.0.0.2", 0))
    silent.listen(8)
    try:
        settings = internal(tmp_path, fetch_timeout_seconds=1.0)
        url = f"http://127.0.0.2:{silent.getsockname()[1]}/a.mp4"
        with (
            pytest.raises(FetchFailed, match="BGSERVICE_FETCH_TIMEOUT_SECONDS"),
            fetch_to_local(url, settings),
        ):
            pass
    finally:
        silent.close()


def test_trickling_server_is_fetch_failed_at_the_deadline(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """Headers, then one byte at a time forever: every read succeeds, the total deadline still ends it."""
    stop = threading.Event()

    def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000000")
        h.end_headers()
        while not stop.wait(0.05):
            h.wfile.write(b"x")
            h.wfile.flush()

    server = serve("127.0.0.2", trickle)
    try:
        with (
            pytest.raises(FetchFailed, match="BGSERVICE_FETCH_TIMEOUT_SECONDS"),
            fetch_to_local(server.url(), internal(tmp_path, fetch_timeout_seconds=1.0)),
        ):
            pass
    finally:
        stop.set()


def test_allowed_internal_server_serves_a_real_clip(
    serve: Callable[..., Server], media_factory: MediaFactory, tmp_path: Path, canary: Server
) -> None:
    clip = media_factory.basic()
    server = serve("127.0.0.2", body(clip.read_bytes(), "video/mp4"))
    settings = internal(tmp_path)
    with fetch_to_local(server.url("/media/clip.mp4"), settings, field="videoUrl") as path:
        assert path.startswith(str(tmp_path / "scratch"))
        info = probe(path, settings)
        assert (info.width, info.height, info.frame_count) == (320, 240, 50)
        assert info.audio is not None
    assert not Path(path).exists()
    assert canary.hits == []


def test_allow_private_urls_lifts_the_address_rule(canary: Server, tmp_path: Path) -> None:
    settings = Settings(tmp_dir=tmp_path / "scratch", allow_private_urls=True)
    with fetch_to_local(canary.url("/ok"), settings) as path:
        assert Path(path).read_bytes() == b"SECRET"


def test_assets_resolve_through_the_callers_storage(tmp_path: Path, settings: Settings) -> None:
    stored = tmp_path / "assets" / "asset_abc.mp4"
    stored.parent.mkdir()
    stored.write_bytes(b"asset bytes")
    with fetch_to_local(
        "asset_abc", settings, resolve_asset=lambda a: str(tmp_path / "assets" / f"{a}.mp4")
    ) as p:
        assert Path(p).read_bytes() == b"asset bytes"
    with (
        pytest.raises(InvalidAsset) as caught,
        fetch_to_local("asset_abc", settings, field="imageUrl", kind="image"),
    ):
        pass
    assert caught.value.field == "imageUrl"


# ------------------------------------------------------------------------------------------------------
# object stores (moto S3 on 127.0.0.1) and the trusting CLI path


def test_object_store_under_an_allowed_prefix(tmp_path: Path, s3: str) -> None:
    fs = fsspec.filesystem("s3")
    fs.pipe(f"{s3}/in/clip.mp4", b"video-bytes")
    fs.pipe(f"{s3}/private/secret.mp4", b"secret")
    settings = Settings(tmp_dir=tmp_path / "scratch", allowed_input_prefixes=f"{s3}/in/", max_input_bytes=100)  # type: ignore[arg-type]
    with fetch_to_local(f"{s3}/in/clip.mp4", settings) as path:
        assert Path(path).read_bytes() == b"video-bytes"
    with pytest.raises(UrlNotAllowed), fetch_to_local(f"{s3}/private/secret.mp4", settings):
        pass
    with pytest.raises(FetchFailed, match="not found"), fetch_to_local(f"{s3}/in/missing.mp4", settings):
        pass
    fs.pipe(f"{s3}/in/big.mp4", b"x" * 101)
    with pytest.raises(InputTooLarge), fetch_to_local(f"{s3}/in/big.mp4", settings):
        pass


def test_trusted_path_keeps_local_files_and_fetches_http_without_the_address_rule(
    canary: Server, serve: Callable[..., Server], tmp_path: Path, settings: Settings
) -> None:
    local = tmp_path / "clip.bin"
    local.write_bytes(b"local")
    with local_input(str(local), settings) as path:
        assert path == str(local)
    with pytest.raises(InvalidInput, match="not found"), local_input(str(tmp_path / "nope.mp4"), settings):
        pass
    # the CLI's user owns the machine: 127.0.0.1 is fine, through the same pinned client
    with local_input(canary.url("/clip.mp4"), settings) as path:
        assert Path(path).read_bytes() == b"SECRET"
    gone = serve("127.0.0.1", status(404))
    with pytest.raises(FetchFailed, match="404"), local_input(gone.url("/clip.mp4"), settings):
        pass
    # and service=... applies the stranger rules
    with (
        pytest.raises(UrlNotAllowed),
        local_input(canary.url("/x"), settings, service="video", field="videoUrl"),
    ):
        pass
    assert canary.hits == ["/clip.mp4"]


# ------------------------------------------------------------------------------------------------------
# a playlist as videoUrl: fetched, then refused by the media open without reading what it lists


def test_hls_playlist_served_as_video_is_refused_unread(
    serve: Callable[..., Server], tmp_path: Path, fifo_sentinel: Callable[[Path], threading.Event]
) -> None:
    """Staged under its URL's .m3u8 name, the playlist would make the HLS demuxer open the (absolute)
    path it lists -- here a FIFO that reports any reader."""
    listed = tmp_path / "victim" / "other-job.mp4"
    listed.parent.mkdir()
    opened = fifo_sentinel(listed)
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{listed}\n#EXT-X-ENDLIST\n"
    server = serve("127.0.0.2", body(text.encode(), "application/vnd.apple.mpegurl"))
    settings = internal(tmp_path)
    with fetch_to_local(server.url("/v.m3u8"), settings) as path:
        assert path.endswith(".m3u8")
        with pytest.raises(InvalidInput, match="playlist") as caught:
            probe(path, settings)
    assert caught.value.code == "invalid_input"
    assert not opened.is_set()


@pytest.mark.parametrize("kind", ["hls", "ffconcat"])
def test_every_media_open_refuses_playlists_unread(
    kind: str, tmp_path: Path, fifo_sentinel: Callable[[Path], threading.Event], media_factory: MediaFactory
) -> None:
    """probe, the frame-time pass, the decoder's open and ffmpeg's audio mux: none opens a listed file
    (an ffconcat list names a sibling, which its demuxer's safe mode would open)."""
    from bgservice.errors import DecodeFailed, EncodeFailed
    from bgservice.media.container import open_input
    from bgservice.media.ffmpeg import finalize
    from bgservice.media.timing import read_frame_times
    from bgservice.media.types import TrimWindow

    listed = tmp_path / "sibling.mp4"
    opened = fifo_sentinel(listed)
    if kind == "hls":
        playlist = tmp_path / "input.m3u8"
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{listed}\n#EXT-X-ENDLIST\n")
    else:
        playlist = tmp_path / "input.ffconcat"
        playlist.write_text("ffconcat version 1.0\nfile sibling.mp4\n")
    settings = Settings(tmp_dir=tmp_path / "scratch")
    with pytest.raises(InvalidInput, match="playlist"):
        probe(str(playlist), settings)
    with pytest.raises(InvalidInput, match="playlist"):
        read_frame_times(str(playlist))
    with pytest.raises(DecodeFailed):
        open_input(str(playlist), error=DecodeFailed)
    # ffmpeg reading the source for the audio: a real clip's probe, the playlist in its place
    info = probe(str(media_factory.basic()), settings)
    for fmt in (info.container_format, ""):  # with the probed demuxer, and left to guess
        with pytest.raises(EncodeFailed):
            finalize(
                str(media_factory.basic()),
                str(playlist),
                replace(info, container_format=fmt),
                TrimWindow(start=0.0, end=info.duration, is_full=True),
                str(tmp_path / "out.mp4"),
            )
    assert not opened.is_set()


@pytest.fixture
def fifo_sentinel() -> Iterator[Callable[[Path], threading.Event]]:
    """``fifo_sentinel(path)`` makes ``path`` a FIFO whose opening by any reader sets the returned event
    (a writer thread waits on it; a reader that opens it gets EOF at once, so nothing blocks)."""
    made: list[tuple[Path, threading.Event, threading.Event]] = []

    def make(path: Path) -> threading.Event:
        os.mkfifo(path)
        opened, done = threading.Event(), threading.Event()

        def writer() -> None:
            with open(path, "wb"):  # returns once a reader opened the FIFO
                if not done.is_set():
                    opened.set()

        threading.Thread(target=writer, daemon=True).start()
        made.append((path, opened, done))
        return opened

    yield make
    for path, _opened, done in made:
        done.set()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # release the writer thread
        os.close(fd)


# ------------------------------------------------------------------------------------------------------
# https: connected to the pinned address, TLS still checks the host name (SNI and certificate)


def _tls_files(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``name`` (not for any IP address)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bgservice test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "leaf.pem", tmp_path / "leaf.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


@pytest.mark.parametrize("cert_name", ["media.example", "other.example"])
def test_https_to_the_pinned_address_keeps_sni_and_the_name_check(
    cert_name: str, serve: Callable[..., Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_file, cert_file, key_file = _tls_files(tmp_path, cert_name)
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)  # type: ignore[assignment,misc,return-value]
    media = serve("127.0.0.2", body(b"over tls"), tls=context)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the client trusts the test CA (httpx reads it)
    calls: list[str] = []
    url = f"https://media.example:{media.port}/v.mp4"
    names = resolver({"media.example": ["127.0.0.2"]}, calls)
    if cert_name == "media.example":
        with fetch_to_local(url, internal(tmp_path), resolver=names) as path:
            assert Path(path).read_bytes() == b"over tls"
        assert media.headers[0]["host"] == f"media.example:{media.port}"
    else:  # a certificate for another name fails verification: the address is pinned, the name is checked
        with pytest.raises(FetchFailed), fetch_to_local(url, internal(tmp_path), resolver=names):
            pass
        assert media.hits == []
    assert server_names == ["media.example"]
    assert calls == ["media.example"]
