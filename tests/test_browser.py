"""The report pages in a real headless browser (Debian's chromium, driven over the DevTools pipe).

Checks that the leaderboard, the gallery and the index load without console errors, uncaught
exceptions or any non-local request, that their tables render and their controls work, that no
layout text turns into markup, and that a screenshot is produced.

Needs /usr/bin/chromium (Debian: ``apt-get install -y --no-install-recommends chromium``); the
test skips with that reason where it is absent.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import report_runs as rr

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)  # fmt: skip


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class Browser:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (fds 3 and 4)."""

    def __init__(self, executable: str, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        args = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                "--window-size=1280,900", "about:blank"]  # fmt: skip
        # fd 3: commands to the browser, fd 4: its replies (the pipe transport's convention)
        self.proc = subprocess.Popen(
            ["sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', "sh", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, *, session: bool = True) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.proc.stdin.write(json.dumps(msg).encode() + b"\0")
        self.proc.stdin.flush()
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for i, e in enumerate(self.events):
            if e["method"] == method:
                return self.events.pop(i)
        while True:
            msg = self._read_message(deadline)
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)
            if msg.get("method") == "Page.javascriptDialogOpening":  # recorded as a problem; dismiss it
                self.send("Page.handleJavaScriptDialog", {"accept": False})

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", promise=True)

    def eval(self, expression: str, *, promise: bool = False):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": promise})
        if "exceptionDetails" in res:
            raise AssertionError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, dialogs and requests that leave the machine."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description') or p['exceptionDetails'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
            elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} ({p['entry'].get('url')})")
            elif m == "Page.javascriptDialogOpening":
                out.append(f"dialog opened: {p.get('message')}")
            elif m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith(("file:", "data:", "about:")):
                    out.append(f"external request: {url}")
        return out

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = _chromium()
    if exe is None:
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium); install it with "
                    "`apt-get install -y --no-install-recommends chromium` to run the browser check")  # fmt: skip
    return exe


@pytest.fixture(scope="module")
def report(tmp_path_factory, toy_runs) -> tuple[Path, Path, Path]:
    from gligen_eval.reporting import build_report

    good, drifted = toy_runs("good", "drifted")
    out = tmp_path_factory.mktemp("browser") / "report"
    build_report([good, drifted], out)
    return out, good, drifted


@pytest.fixture
def browser(chromium, tmp_path):
    b = Browser(chromium, tmp_path / "profile")
    yield b
    b.close()


def _png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 2000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leaderboard_renders_and_sorts(browser, report, tmp_path):
    out, _, _ = report
    browser.open((out / "leaderboard.html").as_uri())
    assert browser.eval("document.querySelectorAll('#leaderboard tbody tr').length") == 2
    headers = browser.eval("Array.from(document.querySelectorAll('#leaderboard thead th')).map(t => t.textContent)")
    assert "box/AP" in headers and "box/mIoU" in headers and "config_hash" in headers
    runs = "Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(r => r.getAttribute('data-run'))"
    assert browser.eval(runs) == ["good", "drifted"]  # written best first by box/AP
    metrics = json.loads((out / "leaderboard.json").read_text())["runs"]
    ap_idx = headers.index("box/AP")
    cell = browser.eval(f"document.querySelector('#leaderboard tbody tr').cells[{ap_idx}].textContent")
    assert cell == f"{metrics[0]['metrics']['box/AP']['value']:.3f}"
    # click the box/AP header: descending first, then ascending
    click = f"document.querySelectorAll('#leaderboard thead th')[{ap_idx}].click()"
    browser.eval(click)
    assert browser.eval(runs) == ["good", "drifted"]
    browser.eval(click)
    assert browser.eval(runs) == ["drifted", "good"]
    # a text column sorts too
    browser.eval(f"document.querySelectorAll('#leaderboard thead th')[{headers.index('run')}].click()")
    assert browser.eval(runs) == ["good", "drifted"]
    assert browser.problems() == []
    assert _png(browser.screenshot(tmp_path / "leaderboard.png"))


def test_gallery_escapes_text_and_filters(browser, report, tmp_path):
    out, _, drifted = report
    browser.open((out / "gallery" / "drifted.html").as_uri())
    assert browser.problems() == []
    # the only script on the page is the page's own; hostile layout text stayed text
    assert browser.eval("document.scripts.length") == 1
    assert browser.eval("document.querySelectorAll('.card b, .side script, svg script').length") == 0
    assert browser.eval(f"document.body.textContent.includes({json.dumps(rr.HOSTILE)})")
    n_cards = browser.eval("document.querySelectorAll('.card').length")
    assert n_cards == len(rr.make_layouts()) * 2

    from gligen_eval.reporting.rundata import RunData

    run = RunData(drifted)
    by_sample: dict[str, list] = {}
    for inst in run.instances:
        by_sample.setdefault(inst.sample_key, []).append(inst)
    visible = "document.querySelectorAll('.card:not(.hidden)').length"

    def choose(select_id: str, value: str) -> None:
        browser.eval(f"(function(){{var s=document.getElementById('{select_id}'); s.value={json.dumps(value)};"
                     "s.dispatchEvent(new Event('change'));})()")  # fmt: skip

    choose("f-category", "cat")
    assert browser.eval(visible) == sum(any(i.category == "cat" for i in v) for v in by_sample.values())
    choose("f-category", "")
    choose("f-failure", "any-miss")
    n_miss = sum(any(not i.hit for i in v) for v in by_sample.values())
    assert 0 < n_miss < n_cards
    assert browser.eval(visible) == n_miss
    assert browser.eval("document.getElementById('f-count').textContent") == f"{n_miss} of {n_cards} images shown"
    choose("f-failure", "all-hit")
    assert browser.eval(visible) == n_cards - n_miss
    choose("f-failure", "")
    # worst first: the first card has the lowest share of hits
    first = browser.eval("document.querySelector('.card').getAttribute('data-sample')")
    shares = {k: sum(i.hit for i in v) / len(v) for k, v in by_sample.items()}
    assert shares[first] == min(shares.values())
    # images are embedded and decoded
    assert browser.eval("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.problems() == []
    assert _png(browser.screenshot(tmp_path / "gallery.png"))


def test_gallery_filters_by_error_type(browser, report):
    from gligen_eval.reporting.rundata import RunData
    from gligen_eval.scoring.instances import ERROR_TYPES

    out, _, drifted = report
    browser.open((out / "gallery" / "drifted.html").as_uri())
    by_sample: dict[str, list] = {}
    for inst in RunData(drifted).instances:
        by_sample.setdefault(inst.sample_key, []).append(inst)
    n_cards = len(by_sample)
    shown = ("Array.from(document.querySelectorAll('.card:not(.hidden)')).map(c => c.getAttribute('data-sample'))"
             ".sort()")  # fmt: skip

    def choose(select_id: str, value: str) -> None:
        browser.eval(f"(function(){{var s=document.getElementById('{select_id}'); s.value={json.dumps(value)};"
                     "s.dispatchEvent(new Event('change'));})()")  # fmt: skip

    options = browser.eval("Array.from(document.querySelectorAll('#f-error option')).map(o => o.value)")
    assert options == ["", *ERROR_TYPES]
    partial = 0
    for kind in ERROR_TYPES:
        choose("f-error", kind)
        want = sorted(k for k, v in by_sample.items() if any(i.error_type == kind for i in v))
        assert browser.eval(shown) == want, kind
        partial += 0 < len(want) < n_cards
    assert partial >= 2  # the drifted run has hits and errors: the filter really hides cards
    # combined with the category: the same object must be of that category and of that error type
    choose("f-error", "hit")
    choose("f-category", "dog")
    want = sorted(k for k, v in by_sample.items() if any(i.error_type == "hit" and i.category == "dog" for i in v))
    assert browser.eval(shown) == want
    choose("f-category", "")
    choose("f-error", "")
    assert len(browser.eval(shown)) == n_cards
    assert browser.problems() == []


def test_index_page_loads_its_plots(browser, report, tmp_path):
    out, _, _ = report
    browser.open((out / "index.html").as_uri())
    n_img = browser.eval("document.images.length")
    assert n_img == len(list((out / "plots").glob("*.png")))
    assert n_img >= 3
    assert browser.eval("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.eval("document.querySelectorAll('#skipped li').length") >= 1
    assert browser.problems() == []
    assert _png(browser.screenshot(tmp_path / "index.png"))


# --------------------------------------------------------------------------------------------
# geometry of the layouts drawn over the images

LONG_WORD = "unbroken" * 60  # 480 characters without a break opportunity


def _geometry_layouts():
    """The usual toy layouts plus a card whose table is far taller than its image (12 objects, a
    full-image box, a very long unbroken caption and phrase) and one with a full-image box alone."""
    from gligen_eval.records import GroundedObject, Layout

    cats = list(rr.COLORS)
    objs = [GroundedObject(phrase="the whole picture", box=(0.0, 0.0, 1.0, 1.0), category="person")]
    for j in range(11):
        x0, y0 = 0.05 * (j % 6), 0.5 + 0.04 * (j % 5)
        objs.append(GroundedObject(phrase=f"a {cats[j % 4]} {LONG_WORD if j == 3 else j}",
                                   box=(x0, y0, x0 + 0.3, y0 + 0.3), category=cats[j % 4]))  # fmt: skip
    tall = Layout(layout_id="TALL", caption=f"caption {LONG_WORD}", objects=tuple(objs), width=64, height=64)
    full = Layout(layout_id="FULL", caption="one box over everything",
                  objects=(GroundedObject(phrase="a dog", box=(0.0, 0.0, 1.0, 1.0), category="dog"),))  # fmt: skip
    return rr.make_layouts() + [tall, full]


MEASURE_JS = """
Array.from(document.querySelectorAll('.card')).map(function (card) {
  function r(el) { var b = el.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; }
  return {
    sample: card.getAttribute('data-sample'),
    image: r(card.querySelector('.imgbox img')),
    objects: Array.from(card.querySelectorAll('.imgbox svg rect.obj')).map(r),
    drawn: Array.from(card.querySelectorAll('.imgbox svg rect')).filter(function (e) {
      return e.getClientRects().length > 0; }).map(r),
    side: r(card.querySelector('.side')),
    card: r(card),
    overflow: [card.scrollWidth, card.clientWidth],
    caption: r(card.querySelector('.caption'))
  };
})
"""


def test_gallery_boxes_lie_on_their_images(browser, tmp_path_factory, tmp_path):
    """Every drawn box sits inside its image's rendered rectangle, a [0,0,1,1] box covers the image
    exactly (±1 px), also on cards whose table is taller than the image; long captions wrap."""
    from gligen_eval.reporting.gallery import write_gallery
    from gligen_eval.reporting.rundata import RunData

    layouts = _geometry_layouts()
    run_dir = rr.make_run(tmp_path_factory.mktemp("geometry"), "geometry", layouts=layouts, drift=0.03)
    run = RunData(run_dir)
    page = write_gallery(run, tmp_path / "gallery.html")
    by_id = {lay.layout_id: lay for lay in layouts}
    layout_of = {s.sample_key: by_id[s.layout_id] for s in run.samples}

    for show_dets in (False, True):
        browser.open(page.as_uri())
        if show_dets:
            browser.eval("document.getElementById('f-dets').click()")
        cards = browser.eval(MEASURE_JS)
        assert len(cards) == len(run.samples)
        tall = [c for c in cards if layout_of[c["sample"]].layout_id == "TALL"]
        assert tall and all(c["side"][3] - c["side"][1] > 1.5 * (c["image"][3] - c["image"][1]) for c in tall)
        for c in cards:
            x0, y0, x1, y1 = c["image"]
            assert x1 - x0 > 100 and y1 - y0 > 100, c
            where = f"card {c['sample']} ({layout_of[c['sample']].layout_id})"
            objects = layout_of[c["sample"]].objects
            assert len(c["objects"]) == len(objects), where
            for obj, (bx0, by0, bx1, by1) in zip(objects, c["objects"]):
                want = (x0 + obj.box[0] * (x1 - x0), y0 + obj.box[1] * (y1 - y0),
                        x0 + obj.box[2] * (x1 - x0), y0 + obj.box[3] * (y1 - y0))  # fmt: skip
                assert max(abs(a - b) for a, b in zip(want, (bx0, by0, bx1, by1))) <= 1.0, (where, obj.box, want)
            assert len(c["drawn"]) >= len(objects)
            for bx0, by0, bx1, by1 in c["drawn"]:
                assert x0 - 1 <= bx0 <= bx1 <= x1 + 1 and y0 - 1 <= by0 <= by1 <= y1 + 1, (where, c["image"])
            # nothing sticks out of the card sideways: long words wrap inside the side column
            assert c["overflow"][0] <= c["overflow"][1], where
            assert c["caption"][2] <= c["side"][2] + 1 and c["side"][2] <= c["card"][2], where
        if show_dets:
            n_dets = sum(len(c["drawn"]) - len(c["objects"]) for c in cards)
            assert n_dets > len(cards)  # detector boxes and dashed matches are drawn and measured too
    full = [c for c in cards if layout_of[c["sample"]].layout_id == "FULL"]
    assert len(full) == 2
    assert browser.problems() == []
    assert _png(browser.screenshot(tmp_path / "geometry.png"))
