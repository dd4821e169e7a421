"""The HTTP service's small pieces without a server: billing, URL signing, keys, the CLI's background
check. (Everything user-visible is tested over real HTTP in test_api*.py.)"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bgservice.api import signing
from bgservice.api.auth import KeyRing, dev_key, key_id, parse_keys
from bgservice.api.billing import amount_usd, billed_seconds
from bgservice.cli import main
from bgservice.errors import Forbidden, InvalidSettings, Unauthorized
from bgservice.settings import Settings


@pytest.mark.parametrize(
    ("duration", "billed", "amount"),
    [
        (2.0, 2.0, 0.12),
        (2.001, 2.1, 0.126),
        (0.04, 0.1, 0.006),
        (1.96, 2.0, 0.12),
        (0.2, 0.2, 0.012),
        (0.30000000000000004, 0.4, 0.024),
        (3599.99, 3600.0, 216.0),
        (0.0, 0.0, 0.0),
    ],
)
def test_billing_rounds_up_to_a_tenth(duration: float, billed: float, amount: float) -> None:
    assert billed_seconds(duration) == billed
    assert amount_usd(billed_seconds(duration)) == amount


def test_amount_is_rounded_to_four_decimals() -> None:
    assert amount_usd(0.1) == 0.006
    assert amount_usd(12.3) == 0.738


def test_signed_urls() -> None:
    secret = b"s" * 32
    path = signing.signed_path(secret, "abc/def.mp4", 2_000_000_000)
    assert path.startswith("/v2/files/abc/def.mp4?expires=2000000000&signature=")
    sig = path.rsplit("=", 1)[1]
    signing.verify(secret, "abc/def.mp4", "2000000000", sig, now=1_000_000_000)
    with pytest.raises(Forbidden):  # expired
        signing.verify(secret, "abc/def.mp4", "2000000000", sig, now=2_000_000_001)
    with pytest.raises(Forbidden):  # another key
        signing.verify(secret, "abc/other.mp4", "2000000000", sig, now=1_000_000_000)
    with pytest.raises(Forbidden):  # another secret
        signing.verify(b"t" * 32, "abc/def.mp4", "2000000000", sig, now=1_000_000_000)
    with pytest.raises(Forbidden):
        signing.verify(secret, "abc/def.mp4", None, sig)


def test_keys_parse_and_authenticate(tmp_path: Path) -> None:
    keys = parse_keys(" alice:k1, alice:k2 ,k3,")
    assert keys == {key_id("k1"): "alice", key_id("k2"): "alice", key_id("k3"): f"key-{key_id('k3')[:8]}"}
    with pytest.raises(InvalidSettings):
        parse_keys("alice:")
    ring = KeyRing(Settings(api_keys="alice:k1,k3", data_dir=tmp_path))
    assert ring.authenticate("Bearer k1", None).name == "alice"
    assert ring.authenticate(None, "k3").key_id == key_id("k3")
    for auth, header in ((None, None), ("Bearer", None), ("Basic k1", None), ("Bearer nope", None)):
        with pytest.raises(Unauthorized):
            ring.authenticate(auth, header)


def test_dev_key_only_in_the_embedded_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = dev_key(settings)
    assert key and dev_key(settings) == key  # made once
    path = tmp_path / "data" / "dev-api-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing(settings).authenticate(f"Bearer {key}", None).name == "dev"
    pg = Settings(data_dir=tmp_path / "pg", database_url="postgresql+psycopg://u@127.0.0.1:1/db")
    assert dev_key(pg) is None
    with pytest.raises(InvalidSettings):
        KeyRing(pg)


def test_cli_colour_and_image_together(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = str(tmp_path / "o.mp4")
    code = main(["process", "in.mp4", "-o", out, "--background", "#fff", "--background-image", "b.png"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid_background: ")
    assert err.count("\n") == 1
