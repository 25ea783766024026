"""Open a page in a real headless Chromium and report what a reader would see.

Speaks the Chrome DevTools Protocol over the browser's loopback websocket (aiohttp), so the
tests need nothing beyond Debian's `chromium` package: no driver, no browser download.

    seen = look_at(Path("report.html"), width=1400, height=900)
    seen.errors        # console errors and uncaught exceptions
    seen.images        # every <img>: loaded?, natural width, where on the page
    seen.boxes         # the boxes of the selectors asked for, in page coordinates
    seen.screenshot    # PNG bytes of the first screen
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Runs in the page once it has loaded: every image and the boxes of the asked-for selectors.
_PROBE = """
(selectors) => JSON.stringify({
  viewport: {width: innerWidth, height: innerHeight},
  images: [...document.images].map(i => {
    const r = i.getBoundingClientRect();
    return {alt: i.alt, complete: i.complete, width: i.naturalWidth,
            top: r.top + scrollY, bottom: r.bottom + scrollY, shown: r.width > 0 && r.height > 0,
            section: (i.closest('section') || {}).id || null};
  }),
  boxes: Object.fromEntries(selectors.map(s => [s, [...document.querySelectorAll(s)].map(e => {
    const r = e.getBoundingClientRect();
    return {top: r.top + scrollY, bottom: r.bottom + scrollY, height: r.height,
            visible: r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'};
  })]))
})
"""


@dataclass
class Seen:
    viewport: dict
    images: list[dict]
    boxes: dict[str, list[dict]]
    errors: list[str]
    screenshot: bytes


def find_browser() -> str | None:
    """The path of a Chromium-family browser on this machine, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def look_at(
    page: Path, *, width: int = 1400, height: int = 900, selectors: tuple[str, ...] = ()
) -> Seen:
    """Load `page` (a local HTML file) at `width` x `height` and look at it."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no chromium: apt-get install chromium")
    # Chromium's helper processes may still write to the profile as it stops: a folder left
    # in /tmp is not a failed check
    with tempfile.TemporaryDirectory(
        prefix="dxray-chromium-", ignore_cleanup_errors=True
    ) as profile:
        process = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = _devtools_url(process)
            return asyncio.run(_look(url, page.resolve().as_uri(), width, height, selectors))
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _devtools_url(process: subprocess.Popen) -> str:
    """The browser's websocket address, from the line it prints on start."""
    seen = []
    for line in process.stderr:
        seen.append(line)
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return match.group(1)
    raise RuntimeError("chromium did not start: " + "".join(seen[-5:]))


class _Session:
    """One page's DevTools session: commands with replies, events collected."""

    def __init__(self, ws, session_id: str | None = None):
        self.ws, self.session_id, self.next_id, self.events = ws, session_id, 0, []

    async def send(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session_id:
            message["sessionId"] = self.session_id
        await self.ws.send_str(json.dumps(message))
        while True:
            reply = json.loads((await self.ws.receive(timeout=60)).data)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    async def until(self, method: str, timeout: float = 60) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        while True:
            event = json.loads((await self.ws.receive(timeout=timeout)).data)
            self.events.append(event)
            if event.get("method") == method:
                return


async def _look(url: str, page_uri: str, width: int, height: int, selectors) -> Seen:
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        browser = _Session(ws)
        target = (await browser.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attached = await browser.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )
        tab = _Session(ws, attached["sessionId"])
        tab.events = browser.events
        for domain in ("Page", "Runtime", "Log"):
            await tab.send(f"{domain}.enable")
        await tab.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        tab.events.clear()
        await tab.send("Page.navigate", {"url": page_uri})
        await tab.until("Page.loadEventFired")
        probe = await tab.send(
            "Runtime.evaluate",
            {"expression": f"({_PROBE})({json.dumps(list(selectors))})", "returnByValue": True},
        )
        seen = json.loads(probe["result"]["value"])
        shot = await tab.send("Page.captureScreenshot", {"format": "png"})
        errors = [_error_text(e) for e in tab.events if _is_error(e)]
        return Seen(
            viewport=seen["viewport"],
            images=seen["images"],
            boxes=seen["boxes"],
            errors=errors,
            screenshot=base64.b64decode(shot["data"]),
        )


def _is_error(event: dict) -> bool:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        return True
    if method == "Runtime.consoleAPICalled":
        return params.get("type") in ("error", "assert")
    if method == "Log.entryAdded":
        return params.get("entry", {}).get("level") == "error"
    return False


def _error_text(event: dict) -> str:
    params = event.get("params", {})
    if "entry" in params:
        return params["entry"].get("text", "")
    if "exceptionDetails" in params:
        return params["exceptionDetails"].get("text", "exception")
    return " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
