"""The web page at ``/`` in a real browser: Debian's headless Chromium driven by Playwright (launched with
the system executable; Playwright never downloads a browser here), against a real ``bgservice serve``.

A screenshot of the finished page is kept: in the test's tmp dir, and under CI (or when
``BGSERVICE_TEST_ARTIFACTS`` names a directory) in ``test-artifacts/`` at the repo root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_server import REPO
from tests.client_service import LiveService
from tests.conftest import IN_CI, need
from tests.media_factory import MediaFactory

pytestmark = [pytest.mark.ray, pytest.mark.slow]

playwright_api = pytest.importorskip("playwright.sync_api")

JOB_MS = 300_000
COLOUR = (255, 0, 255)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def keep_artifact(path: Path) -> None:
    target = os.environ.get("BGSERVICE_TEST_ARTIFACTS") or (str(REPO / "test-artifacts") if IN_CI else "")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium()
    need(exe is not None, "Debian's chromium is not installed (.ci/run installs it)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=exe, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, errors  # no JavaScript exception on the page


SAMPLE = """async ([id, t, x, y]) => {
  const v = document.getElementById(id);
  const seeked = new Promise((r) => v.addEventListener("seeked", r, {once: true}));
  v.pause();
  v.currentTime = t;
  await seeked;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  return {width: v.videoWidth, height: v.videoHeight, duration: v.duration,
          pixel: Array.from(g.getImageData(x, y, 1, 1).data).slice(0, 3)};
}"""


def test_upload_colour_trim_submit_and_compare(
    live_service: LiveService, media_factory: MediaFactory, page: Any, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    clip = media_factory.basic()  # H.264 + AAC in MP4, 320x240, 2 s
    key = live_service.key("web")
    page.goto(f"{live_service.base}/#key={key}")
    assert "key=" not in page.url  # the key leaves the address bar once stored
    assert page.evaluate("localStorage.getItem('bgservice.apiKey')") == key

    page.set_input_files("#video-file", str(clip))
    expect(page.locator("#upload-text")).to_have_text("uploaded", timeout=60_000)
    assert page.locator("#upload-progress").get_attribute("value") == "100"
    expect(page.locator("#preview")).to_be_visible()

    # trim: start from the player's current time, end typed
    page.wait_for_function("document.getElementById('preview').readyState >= 1")
    page.evaluate("document.getElementById('preview').currentTime = 0.5")
    page.wait_for_function("Math.abs(document.getElementById('preview').currentTime - 0.5) < 0.02")
    page.click("#start-now")
    assert float(page.input_value("#start")) == pytest.approx(0.5, abs=0.02)
    page.fill("#end", "1.5")

    # a wrong hex: the API's message appears next to the hex field
    page.check("#bg-colour")
    page.fill("#colour-hex", "#12345G")
    page.click("#submit")
    expect(page.locator("#colour-error")).not_to_be_empty()
    assert page.get_attribute("#colour-hex", "aria-invalid") == "true"
    assert page.locator("#form-error").inner_text() == ""
    expect(page.locator("#job-box")).to_be_hidden()

    # pick the colour with the picker: the hex field follows and the error goes
    page.locator("#colour-picker").fill("#ff00ff")
    assert page.input_value("#colour-hex") == "#FF00FF"
    expect(page.locator("#colour-error")).to_be_empty()
    page.click("#submit")
    expect(page.locator("#job-box")).to_be_visible()
    expect(page.locator("#result-box")).to_be_visible(timeout=JOB_MS)
    expect(page.locator("#job-status")).to_have_text("completed")
    page.wait_for_function("document.getElementById('result').readyState >= 2", timeout=60_000)
    page.wait_for_function("document.getElementById('original').readyState >= 2", timeout=60_000)

    result = page.evaluate(SAMPLE, ["result", 0.5, 4, 4])
    assert (result["width"], result["height"]) == (320, 240)  # the input's size
    assert result["duration"] == pytest.approx(1.0, abs=0.06)  # the trimmed duration
    assert all(abs(a - b) <= 12 for a, b in zip(result["pixel"], COLOUR, strict=True)), result["pixel"]

    # the two players play together: the original follows the result, offset by the trim start
    page.click("#play-both")
    page.wait_for_function(
        "!document.getElementById('original').paused && document.getElementById('result').currentTime > 0.2"
    )
    page.click("#play-both")
    page.wait_for_function("document.getElementById('original').paused")
    offset = page.evaluate(
        "document.getElementById('original').currentTime - document.getElementById('result').currentTime"
    )
    assert offset == pytest.approx(0.5, abs=0.25)

    href = page.get_attribute("#download", "href")
    assert href and "/v2/files/" in href
    job_id = page.inner_text("#job-id")
    recent = page.locator("#recent li", has=page.locator(f"code[title='{job_id}']"))
    expect(recent).to_contain_text("completed")

    # usable at phone width: nothing wider than the screen
    shot = tmp_path / "web-finished.png"
    page.screenshot(path=str(shot), full_page=True)
    keep_artifact(shot)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone = tmp_path / "web-finished-phone.png"
    page.screenshot(path=str(phone), full_page=True)
    keep_artifact(phone)


def test_no_preview_for_flv_still_works(live_service: LiveService, videos: Path, page: Any) -> None:
    expect = playwright_api.expect
    flv = videos / "talking_head_cremad_1001_DFA_NEU_XX.flv"
    page.goto(f"{live_service.base}/#key={live_service.key('web')}")
    page.set_input_files("#video-file", str(flv))
    expect(page.locator("#no-preview")).to_be_visible(timeout=30_000)
    expect(page.locator("#upload-text")).to_have_text("uploaded", timeout=60_000)
    page.fill("#end", "0.5")
    page.select_option("#format", "webm")  # transparent: played over a checkerboard
    page.click("#submit")
    expect(page.locator("#result-box")).to_be_visible(timeout=JOB_MS)
    expect(page.locator("#original-missing")).to_be_visible()
    expect(page.locator("#result")).to_have_class("checker")
    assert (page.get_attribute("#download", "download") or "").endswith(".webm")
    page.wait_for_function("document.getElementById('result').readyState >= 2", timeout=60_000)
    result = page.evaluate(SAMPLE, ["result", 0.1, 4, 4])
    assert (result["width"], result["height"]) == (480, 360)
    assert all(v <= 16 for v in result["pixel"]), result["pixel"]  # removed: transparent, nothing drawn


def test_controls_are_labelled_and_reachable(live_service: LiveService, page: Any) -> None:
    page.goto(f"{live_service.base}/")
    unlabelled = page.evaluate(
        """() => Array.from(document.querySelectorAll("input, button, select, a.button")).filter((el) => {
             if (el.closest("[hidden]")) return false;
             const named = (el.labels && el.labels.length) || el.getAttribute("aria-label")
               || (el.tagName !== "INPUT" && el.textContent.trim());
             return !named;
           }).map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    # the (visually hidden) file input is reachable with Tab, and no key means a clear message
    focused: list[str] = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert "video-file" in focused
    page.click("#submit")
    assert page.inner_text("#video-error") or page.inner_text("#key-state")
