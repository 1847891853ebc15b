"""The QA page in a real headless Chromium (Debian's ``chromium``), driven over DevTools.

The browser runs with ``--remote-debugging-pipe``: DevTools protocol messages are JSON
separated by NUL bytes on fds 3 (to the browser) and 4 (from it), so no websocket
client is needed. Skipped only when Chromium is not installed.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from medveil.cli.main import main as cli_main
from medveil.pixels.qa import SIGNOFF, make_server, read_signoff, released_paths, write_report

from .test_qa_signoff import FRAMES, make_run

pytest.importorskip("PIL")
import itertools

from PIL import Image

CHROMIUM = next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"
)
WIDTH, HEIGHT = 1280, 900


def _high(fd: int) -> int:
    """The fd moved to a number of 10 or more (the original is closed)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Chromium:
    """A headless Chromium and one page of it, spoken to over the DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        # Move the child's ends above 9 so the shell's 3<& and 4>& cannot overwrite them.
        to_r, from_w = (_high(fd) for fd in (to_r, from_w))
        args = [
            "--headless",
            "--no-sandbox",  # CI containers run as root, where the sandbox cannot start
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ]
        # bash (dash takes one-digit fds only) puts the pipe ends on fds 3 and 4, where
        # Chromium expects them.
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_r} 4>&{from_w}', CHROMIUM, *args],
            pass_fds=(to_r, from_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""
        try:
            self._attach()
        except BaseException:
            self.close()
            raise

    def _attach(self) -> None:
        """Open a page target and attach to it (flat session)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )

    def _read(self, timeout: float) -> dict[str, Any]:
        """The next message from the browser."""
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(msg))

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        """Send one command to the page's session (or the browser) and return its result."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            got = self._read(timeout)
            if got.get("id") == self._id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})
            self.events.append(got)

    def js(self, expr: str) -> Any:
        """Evaluate a JavaScript expression in the page; its value, by JSON."""
        res = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, expr: str, timeout: float = 20) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expr)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"never true: {expr}")

    def open(self, url: str) -> None:
        """Load url and wait for the document and the images it shows to be loaded."""
        self.call("Page.navigate", {"url": url})
        self.wait("document.readyState === 'complete' && !!document.body.dataset.page")
        self.wait_images()

    def wait_images(self) -> None:
        """Wait for every image in the viewport to be decoded."""
        self.wait(
            "Array.from(document.images).filter(i => { const r = i.getBoundingClientRect();"
            " return r.bottom > 0 && r.top < innerHeight && r.width > 0; })"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )

    def screenshot(self) -> np.ndarray:
        """The viewport as an RGB array (rows, cols, 3)."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            return np.asarray(im.convert("RGB"))

    def click(self, x: float, y: float) -> None:
        """A left click at viewport coordinates."""
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )

    def click_on(self, selector: str) -> None:
        """Scroll the element into view and click its centre, as a user would."""
        rect = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        self.click(*rect)

    def key(self, key: str, code: int) -> None:
        """Press and release one key."""
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code},
            )

    def type_into(self, selector: str, text: str) -> None:
        """Focus a text field and type into it."""
        self.click_on(selector)
        self.call("Input.insertText", {"text": text})

    def close(self) -> None:
        """Close the browser and its pipes."""
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: a 5-frame ACME MR image, pydicom's CT_small and MR_small."""
    return make_run(tmp_path_factory.mktemp("qa-browser"))


@pytest.fixture
def out(run_out: Path, tmp_path: Path) -> Path:
    """A private copy of the run's output, with its QA page built by the CLI."""
    dest = tmp_path / "out"
    shutil.copytree(run_out, dest)
    assert cli_main(["qa", str(dest)]) == 0
    return dest


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    """A fresh headless Chromium with its own profile."""
    b = Chromium(tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def _page_url(out: Path) -> str:
    return (out / ".medveil" / "qa" / "index.html").as_uri()


def _cine_path(out: Path) -> str:
    """The released path of the multi-frame image."""
    (cine,) = [
        p
        for p in released_paths(out)
        if int(pydicom.dcmread(out / p, stop_before_pixels=True).get("NumberOfFrames", 1)) > 1
    ]
    return cine


def test_layout_filmstrip_and_device_sections(out: Path, browser: Chromium) -> None:
    browser.open(_page_url(out))
    layout = browser.js(
        "Array.from(document.querySelectorAll('section.device')).map(s => ({"
        " device: s.dataset.device, items: Array.from(s.querySelectorAll('article.item'))"
        ".map(a => ({path: a.dataset.path, frames: a.querySelectorAll('.filmstrip a.frame')"
        ".length, imgs: a.querySelectorAll('.filmstrip img').length}))}))"
    )
    # One section per device as the output keeps it, each image once, every frame shown.
    expected: dict[str, list[tuple[str, int]]] = {}
    for rel in released_paths(out):
        ds = pydicom.dcmread(out / rel, stop_before_pixels=True)
        device = " · ".join(
            [str(ds.Modality), f"{ds.Manufacturer} {ds.ManufacturerModelName}"]
            + ([f"station {ds.StationName}"] if ds.get("StationName") else [])
        )
        expected.setdefault(device, []).append((rel, int(ds.get("NumberOfFrames", 1) or 1)))
    got = {s["device"]: sorted((i["path"], i["frames"]) for i in s["items"]) for s in layout}
    assert got == {d: sorted(v) for d, v in expected.items()}
    assert all(i["imgs"] == i["frames"] for s in layout for i in s["items"])
    assert any(i["frames"] == FRAMES for s in layout for i in s["items"])
    page = (out / ".medveil" / "qa" / "index.html").read_text()
    assert "DOE" not in page.upper() and "PHI-123456" not in page  # released data only

    # The screenshot shows the cine's filmstrip: one non-blank thumbnail per frame, and
    # the frames differ (the square moves), so each tile is its own frame.
    cine = _cine_path(out)
    sel = f"article[data-path={json.dumps(cine)}]"
    rects = browser.js(
        f"(() => {{ const a = document.querySelector({json.dumps(sel)});"
        " a.scrollIntoView({block: 'center'});"
        " return Array.from(a.querySelectorAll('.filmstrip img')).map(i => {"
        " const r = i.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }); })()"
    )
    browser.wait_images()
    shot = browser.screenshot()
    assert shot.shape[:2] == (HEIGHT, WIDTH)
    assert len(rects) == FRAMES
    tiles = []
    for x, y, w, h in rects:
        assert w > 32 and h > 24 and 0 <= y and y + h <= HEIGHT and x + w <= WIDTH
        tile = shot[int(y) + 2 : int(y + h) - 2, int(x) + 2 : int(x + w) - 2].astype(int)
        assert tile.std() > 20, "a blank thumbnail in the screenshot"
        tiles.append(tile)
    for a, b in itertools.pairwise(tiles):
        assert a.shape == b.shape and np.abs(a - b).mean() > 1  # different frames
    # Thumbnails sit side by side on one row: a filmstrip.
    assert len({round(r[1]) for r in rects}) == 1
    assert all(b[0] > a[0] + a[2] - 1 for a, b in itertools.pairwise(rects))


def test_click_opens_the_frame_at_full_resolution(out: Path, browser: Chromium) -> None:
    browser.open(_page_url(out))
    cine = _cine_path(out)
    ds = pydicom.dcmread(out / cine, stop_before_pixels=True)
    assert browser.js("document.getElementById('viewer').hidden") is True
    browser.click_on(f"article[data-path={json.dumps(cine)}] a.frame[data-frame='2'] img")
    browser.wait(
        "!document.getElementById('viewer').hidden && document.getElementById('viewer-img')"
        ".complete && document.getElementById('viewer-img').naturalWidth > 0"
    )
    view = browser.js(
        "(() => { const i = document.getElementById('viewer-img'); const r ="
        " i.getBoundingClientRect(); return {src: i.getAttribute('src'), nw: i.naturalWidth,"
        " nh: i.naturalHeight, rect: [r.x, r.y, r.width, r.height], caption:"
        " document.getElementById('viewer-caption').textContent}; })()"
    )
    assert (view["nw"], view["nh"]) == (ds.Columns, ds.Rows)  # full resolution, not a thumb
    thumb_w = browser.js(
        f"document.querySelector({json.dumps(f'article[data-path={json.dumps(cine)}]')})"
        ".querySelector('a.frame[data-frame=\"2\"] img').naturalWidth"
    )
    assert thumb_w < ds.Columns  # the filmstrip holds smaller images: the viewer is not one
    assert view["rect"][2:] == [ds.Columns, ds.Rows]  # drawn at its own size
    assert f"frame 3 of {FRAMES}" in view["caption"]
    # The screenshot shows exactly that frame's pixels where the viewer draws it.
    shot = browser.screenshot()
    x, y = round(view["rect"][0]), round(view["rect"][1])
    shown = shot[y : y + ds.Rows, x : x + ds.Columns].astype(int)
    with Image.open(out / ".medveil" / "qa" / view["src"]) as im:
        frame = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(shown - frame).max() <= 2
    # The arrow keys step through the frames, Escape closes.
    browser.key("ArrowRight", 39)
    browser.wait("document.getElementById('viewer-caption').textContent.includes('frame 4 of')")
    browser.key("Escape", 27)
    browser.wait("document.getElementById('viewer').hidden")


def _decide(browser: Chromium, cine: str) -> None:
    """Reject the cine, approve the rest, name the reviewer: as a user, by clicks and keys."""
    browser.click_on(f"article[data-path={json.dumps(cine)}] input[value='rejected']")
    browser.click_on("#approve-rest")
    browser.type_into("#reviewer", "Dr Q. Reviewer")
    assert "2 approved, 1 rejected, 0 undecided" in browser.js(
        "document.getElementById('counts').textContent"
    )


def test_downloaded_signoff_installs_with_the_cli(
    out: Path, browser: Chromium, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.call(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    browser.open(_page_url(out))
    cine = _cine_path(out)
    _decide(browser, cine)
    assert browser.js("document.getElementById('save').hidden") is True  # file://: no server
    browser.click_on("#download")
    deadline = time.monotonic() + 20
    while not (downloads / SIGNOFF).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_signoff(out) is None  # the page itself writes nothing
    assert cli_main(["qa", str(out), "--signoff", str(downloads / SIGNOFF)]) == 0
    assert "2 approved, 1 rejected" in capsys.readouterr().out
    got = read_signoff(out)
    assert got is not None and got.reviewer == "Dr Q. Reviewer"
    assert got.rejected == {cine} and got.approved == set(released_paths(out)) - {cine}
    # Decisions survive a reload (local storage), so a long review can be resumed.
    browser.open(_page_url(out))
    assert "2 approved, 1 rejected" in browser.js("document.getElementById('counts').textContent")
    # A page rebuilt after the sign-off starts from it in a browser that has no marks.
    browser.js("localStorage.clear()")
    assert cli_main(["qa", str(out)]) == 0
    browser.open(_page_url(out))
    assert "Signed off by Dr Q. Reviewer" in browser.js(
        "document.getElementById('prior-note').textContent"
    )
    assert "2 approved, 1 rejected" in browser.js("document.getElementById('counts').textContent")
    assert browser.js(
        f"document.querySelector({json.dumps(f'article[data-path={json.dumps(cine)}]')})"
        ".classList.contains('rejected')"
    )


def test_served_page_saves_the_signoff(out: Path, browser: Chromium, tmp_path: Path) -> None:
    server, url = make_server(out, out / ".medveil" / "qa")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser.open(url)
        browser.wait_images()  # the frames load through the token URL too
        cine = _cine_path(out)
        _decide(browser, cine)
        # The download still works under the server's Content-Security-Policy.
        browser.call(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
        )
        browser.click_on("#download")
        deadline = time.monotonic() + 20
        while not (tmp_path / SIGNOFF).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads((tmp_path / SIGNOFF).read_text())["rejected"] == [cine]
        assert browser.js("document.getElementById('save').hidden") is False
        browser.click_on("#save")
        status = browser.wait(
            "(t => t.startsWith('saved') || t.startsWith('refused') ? t : '')"
            "(document.getElementById('status').textContent)"
        )
        assert status.startswith("saved"), status
        got = read_signoff(out)
        assert got is not None and got.rejected == {cine} and len(got.approved) == 2
        # Without the session's token nothing is served; a foreign origin cannot post.
        base = url.rsplit("/", 2)[0]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/index.html", timeout=5)
        assert e.value.code == 404
        token_url = url.rsplit("/", 1)[0]
        for headers, code in [
            ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
            ({"Content-Type": "text/plain"}, 415),
        ]:
            req = urllib.request.Request(
                token_url + "/signoff", data=b"{}", headers=headers, method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=5)
            assert e.value.code == code
        bad = urllib.request.Request(
            token_url + "/signoff",
            data=json.dumps(
                {
                    "reviewer": "R",
                    "time": "2026-12-06T20:00:00Z",
                    "approved": ["../x"],
                    "rejected": [],
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=5)
        assert e.value.code == 400 and "not a relative path" in json.loads(e.value.read())["error"]
        assert read_signoff(out) == got  # a refused post leaves the sign-off as it was
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_page_of_a_big_cine_lists_every_frame(tmp_path: Path) -> None:
    """A write_report check without the browser: 5 frames give 5 thumbnails and 5 PNGs."""
    out = make_run(tmp_path)
    index = write_report(out)
    assert index.read_text().count("class='frame'") == FRAMES + 2
    assert len(list((index.parent / "img").rglob("f*.png"))) == FRAMES + 2
