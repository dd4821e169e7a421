"""The output plays in a browser's <video>: headless Chromium (Debian's package) loads it from 127.0.0.1.

The page decodes a frame into a canvas, so the test checks what a viewer sees: the video's size and
duration, and the new background colour where the green screen was.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgservice.cli import main
from tests.conftest import need


def video_page(src: str, report: str, page_style: str = "") -> str:
    """A page that loads ``src`` in a <video>, seeks to 0.5 s and then runs ``report`` (JavaScript with
    ``v``, the video, ``c``, a canvas of its size, ``g``, its 2D context, and ``out(obj)``, which writes
    ``obj`` as JSON into #result, where :func:`run_page` reads it)."""
    return f"""<!doctype html>
<html><body style="{page_style}">
<video id="v" src="{src}" muted preload="auto" playsinline></video>
<canvas id="c"></canvas>
<pre id="result">pending</pre>
<script>
const v = document.getElementById("v");
const out = (o) => {{ document.getElementById("result").textContent = JSON.stringify(o); }};
v.addEventListener("error", () => out({{error: v.error ? v.error.code : -1}}));
v.addEventListener("loadeddata", () => {{ v.currentTime = 0.5; }});
v.addEventListener("seeked", () => {{
  const c = document.getElementById("c");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  {report}
}});
</script>
</body></html>
"""


PAGE = video_page(
    "out.mp4",
    """g.drawImage(v, 0, 0);
  const corner = Array.from(g.getImageData(10, 10, 1, 1).data).slice(0, 3);
  out({width: v.videoWidth, height: v.videoHeight, duration: v.duration, readyState: v.readyState,
       corner: corner});""",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A static HTTP server on 127.0.0.1 for ``tmp_path``; yields (directory, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_output_plays_in_a_browser_video_element(videos: Path, served: tuple[Path, str]) -> None:
    browser = chromium()
    need(browser is not None, "Debian's chromium is not installed (.ci/run installs it)")
    assert browser is not None
    root, base = served
    src = videos / "talking_head_cremad_1001_DFA_NEU_XX.flv"
    assert (
        main(
            ["process", str(src), "-o", str(root / "out.mp4"), "--background", "#1E90FF", "--engine", "local"]
        )
        == 0
    )
    (root / "index.html").write_text(PAGE)
    result = run_page(f"{base}/index.html", root)
    assert "error" not in result, f"the browser refused the file: MediaError code {result.get('error')}"
    assert (result["width"], result["height"]) == (480, 360)
    assert abs(result["duration"] - 2.035) < 0.05
    assert result["readyState"] >= 2
    r, g, b = result["corner"]
    assert abs(r - 30) <= 12 and abs(g - 144) <= 12 and abs(b - 255) <= 12, result["corner"]


def run_page(url: str, root: Path) -> dict[str, Any]:
    """Load ``url`` in headless Chromium and return the JSON the page writes into ``<pre id=result>``."""
    browser = chromium()
    assert browser is not None
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={root / 'profile'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert match, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(match.group(1).replace("&quot;", '"'))
    return result
