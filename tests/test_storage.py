"""Input and output through fsspec: local paths, file://, memory:// and a real S3 API (moto, 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from bgservice.errors import EncodeFailed, FetchFailed, InputTooLarge, InvalidInput, InvalidOutput
from bgservice.settings import Settings
from bgservice.storage import check_output_url, local_input, publish


def test_local_path_is_used_in_place(tmp_path: Path, settings: Settings) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 10)
    with local_input(str(src), settings) as path:
        assert Path(path) == src
    with local_input(f"file://{src}", settings) as path:
        assert Path(path) == src
    assert src.exists()


def test_missing_local_input_is_invalid_input(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="not found"), local_input(str(tmp_path / "nope.mp4"), settings):
        pass


def test_input_over_the_size_limit(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * 2048)
    small = Settings(max_input_bytes=1024, tmp_dir=tmp_path / "scratch")
    with pytest.raises(InputTooLarge), local_input(str(src), small):
        pass
    fs = fsspec.filesystem("memory")
    fs.pipe("/big.bin", b"x" * 2048)
    with pytest.raises(InputTooLarge), local_input("memory:///big.bin", small):
        pass


def test_remote_input_is_copied_then_removed(tmp_path: Path, settings: Settings) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/in/clip.mp4", b"payload")
    with local_input("memory:///in/clip.mp4", settings) as path:
        assert Path(path).read_bytes() == b"payload"
        assert Path(path).suffix == ".mp4"
        copied = Path(path)
    assert not copied.exists()
    assert not any((tmp_path / "scratch").iterdir())


def test_missing_remote_input_is_fetch_failed(settings: Settings) -> None:
    """A source that could not be read remotely is not the user's malformed input: fetch_failed (502)."""
    with pytest.raises(FetchFailed, match="not found"), local_input("memory:///nothing/here.mp4", settings):
        pass


def test_unknown_protocol_is_invalid_input(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="unsupported"), local_input("nosuchproto://x/y.mp4", settings):
        pass


def test_publish_local_is_atomic_and_leaves_no_partials(tmp_path: Path) -> None:
    work = tmp_path / "work.mp4"
    work.write_bytes(b"done")
    target = tmp_path / "out" / "deep" / "result.mp4"
    publish(work, str(target))
    assert target.read_bytes() == b"done"
    assert not work.exists()
    assert [p.name for p in target.parent.iterdir()] == ["result.mp4"]


def test_output_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidOutput):
        check_output_url(str(tmp_path))
    with pytest.raises(InvalidOutput):
        check_output_url("nosuchproto://bucket/key.mp4")


def test_s3_round_trip(tmp_path: Path, settings: Settings, s3: str) -> None:
    fs = fsspec.filesystem("s3")
    fs.pipe(f"{s3}/in/clip.flv", b"video-bytes")
    with local_input(f"{s3}/in/clip.flv", settings) as path:
        assert Path(path).read_bytes() == b"video-bytes"
    work = tmp_path / "w.mp4"
    work.write_bytes(b"result")
    publish(work, f"{s3}/out/result.mp4")
    assert fs.cat(f"{s3}/out/result.mp4") == b"result"
    with pytest.raises(FetchFailed, match="not found"), local_input(f"{s3}/in/missing.flv", settings):
        pass
    with pytest.raises(FetchFailed), local_input("s3://no-such-bucket-here/in.flv", settings):
        pass


def test_publish_to_missing_bucket_fails_cleanly(tmp_path: Path, s3: str) -> None:
    work = tmp_path / "w.mp4"
    work.write_bytes(b"result")
    with pytest.raises(EncodeFailed):
        publish(work, "s3://no-such-bucket-here/out.mp4")
    assert not work.exists()
