"""Open a built HTML site (the Jupyter Book) page by page in headless Chromium and report what broke.

In: the folder of a built site (``book/_build/html``). It is served over ``http://127.0.0.1`` from a
thread (:func:`serve`), so a missing file is a real 404, and every page is opened in Debian's
``chromium`` driven by ``chromedriver`` through Selenium (:func:`start_chromium`; nothing is
downloaded: the driver's path is given, so Selenium Manager never runs).

Out: one :class:`PageReport` per page (:func:`check_site`), whose ``problems`` list each of

- ``missing resource``: a request of the page (image, CSS, JS, font ...) answered 4xx/5xx by the
  server, or a resource Chromium failed to load (``Failed to load resource`` in the console);
- ``undecoded image``: an ``<img>`` that is not ``complete`` with ``naturalWidth > 0`` (a 404, or
  a file that is not an image);
- ``console error``: a SEVERE entry of the browser log (``console.error``, an uncaught exception);
- ``no figures``: a chapter page (``notebooks/*``) without a single decoded image in its cell outputs.

One exception, listed in ``offline`` instead: MathJax from its CDN when the machine has no network
(see OFFLINE_TOLERATED).

With ``screenshots`` (a folder), a full-page PNG of every page is saved there.
"""

from __future__ import annotations

import http.server
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# no network in the sandbox: without these Chromium keeps trying to reach Google's services
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
PAGE_LOAD_TIMEOUT_S = 60
IMAGE_WAIT_S = 15  # how long a page's images may take to finish loading
SCREENSHOT_MAX_HEIGHT = 16000  # px; a long chapter is cut there
CHAPTER_PREFIX = "notebooks/"  # pages of the executed chapters, which must show figures
# Sphinx loads MathJax from its CDN (the default mathjax_path); on a machine without network it cannot load,
# and the math of a page shows as TeX source. Only this file, and only when failing for lack of network
# (its host name does not resolve), is a note (``PageReport.offline``) instead of a problem: any other
# external resource, and this one failing otherwise (a 404 from the CDN), is a problem.
OFFLINE_TOLERATED = ("https://cdn.jsdelivr.net/npm/mathjax@3/",)
NO_NETWORK_ERRORS = ("net::ERR_NAME_NOT_RESOLVED", "net::ERR_INTERNET_DISCONNECTED", "net::ERR_ADDRESS_UNREACHABLE")
SKIPPED_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "jupyter_execute"}


def missing_browser() -> str | None:
    """Why the browser check cannot run here, or None when it can."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


# -- the server -------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``directory`` and records every (path, status) it answers; logs nothing to stderr."""

    def __init__(self, *args, record: list, **kwargs):
        self._record = record
        super().__init__(*args, **kwargs)

    def log_request(self, code="-", size="-"):
        self._record.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format, *args):  # noqa: A002 -- the base class's name
        pass


@dataclass
class Server:
    """A running server: its base URL and the (path, status) of every request so far."""

    url: str
    requests: list[tuple[str, int]] = field(default_factory=list)

    def drain(self) -> list[tuple[str, int]]:
        """The requests since the last drain."""
        taken, self.requests[:] = list(self.requests), []
        return taken


@contextmanager
def serve(root: Path) -> Iterator[Server]:
    """Serve the folder ``root`` on a free port of 127.0.0.1 from a daemon thread."""
    record: list[tuple[str, int]] = []
    handler = partial(_Handler, directory=str(root), record=record)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(url=f"http://127.0.0.1:{httpd.server_address[1]}/", requests=record)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# -- the browser ------------------------------------------------------------------------------------


@contextmanager
def start_chromium():
    """A Selenium WebDriver on headless Chromium with a fresh profile; the browser log is kept (ALL)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mrcnn-np-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# -- one page ---------------------------------------------------------------------------------------

_IMAGES_JS = """
return Array.from(document.images).map(img => ({
    src: img.currentSrc || img.src,
    complete: img.complete,
    width: img.naturalWidth,
    in_output: img.closest('.cell_output, .output') !== null,  // a chapter's figures are cell outputs
}));
"""
_EAGER_JS = """
for (const img of document.images) { if (img.loading === 'lazy') { img.loading = 'eager'; } }
window.scrollTo(0, document.body.scrollHeight); window.scrollTo(0, 0);
"""
_PENDING_JS = "return Array.from(document.images).filter(img => !img.complete).length;"
_FAILED_RESOURCES_JS = """
return performance.getEntriesByType('resource')
    .filter(e => e.responseStatus >= 400)
    .map(e => e.name + ' (HTTP ' + e.responseStatus + ')');
"""


@dataclass
class PageReport:
    """What one page showed: its images, the failed resources, the console errors."""

    page: str  # relative to the site root, e.g. "notebooks/03_rpn.html"
    images: list[dict] = field(default_factory=list)
    failed_resources: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)  # OFFLINE_TOLERATED resources that failed for lack of network

    @property
    def is_chapter(self) -> bool:
        return self.page.startswith(CHAPTER_PREFIX)

    @property
    def figures(self) -> int:
        """Decoded images in cell outputs or figures."""
        return sum(1 for img in self.images if img["in_output"] and img["complete"] and img["width"] > 0)

    @property
    def problems(self) -> list[str]:
        out = [f"{self.page}: missing resource: {r}" for r in self.failed_resources]
        out += [
            f"{self.page}: undecoded image: {img['src']} (complete={img['complete']}, naturalWidth={img['width']})"
            for img in self.images
            if not (img["complete"] and img["width"] > 0)
        ]
        out += [f"{self.page}: console error: {e}" for e in self.console_errors]
        if self.is_chapter and self.figures == 0:
            out.append(f"{self.page}: no figures: a chapter page shows no decoded image in its outputs")
        return out


def check_page(driver, server: Server, page: str, screenshots: Path | None = None) -> PageReport:
    """Open ``page`` (a path relative to the site root), wait for its images, and report."""
    driver.get_log("browser")  # drop what an earlier page left
    server.drain()
    driver.get(server.url + page)
    _settle(driver)  # index.html of a Jupyter Book redirects (meta refresh) to the root page
    driver.execute_script(_EAGER_JS)
    deadline = time.monotonic() + IMAGE_WAIT_S
    while driver.execute_script(_PENDING_JS) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # let late requests (web fonts, scripts run on load) reach the server and the log
    report = PageReport(page=page, images=driver.execute_script(_IMAGES_JS))
    # Chromium asks every site for /favicon.ico on its own; a page that names no icon has lost nothing
    answered = [(path, status) for path, status in server.drain() if path != "/favicon.ico"]
    failed = [f"{path} (HTTP {status})" for path, status in answered if status >= 400]
    failed += [r for r in driver.execute_script(_FAILED_RESOURCES_JS) if not _served_here(r, server)]
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if entry.get("source") == "network" or "Failed to load resource" in entry["message"]:
            message = entry["message"]
            if message.startswith(OFFLINE_TOLERATED) and any(error in message for error in NO_NETWORK_ERRORS):
                report.offline.append(message)
            elif not message.startswith(server.url + "favicon.ico"):
                failed.append(message)
        else:
            report.console_errors.append(entry["message"])
    report.failed_resources = failed
    if screenshots is not None:
        _screenshot(driver, screenshots / (page.replace("/", "__").removesuffix(".html") + ".png"))
    return report


_READY_JS = """
const refresh = document.querySelector('meta[http-equiv="refresh" i]');
return [document.readyState === 'complete' && document.body !== null, refresh !== null];
"""


def _settle(driver) -> None:
    """Wait until the page shown is loaded, following a meta refresh to the page it leads to."""
    from selenium.common.exceptions import JavascriptException

    deadline = time.monotonic() + PAGE_LOAD_TIMEOUT_S
    url = driver.current_url
    while time.monotonic() < deadline:
        try:
            ready, refreshes = driver.execute_script(_READY_JS)
        except JavascriptException:  # the document was replaced while the script ran
            ready, refreshes = False, True
        if ready and not refreshes:
            return
        if refreshes and driver.current_url != url:
            url = driver.current_url  # arrived somewhere else: wait for that page
        time.sleep(0.1)
    raise TimeoutError(f"{driver.current_url} did not finish loading in {PAGE_LOAD_TIMEOUT_S} s")


def _served_here(resource: str, server: Server) -> bool:
    """A failed resource of our own server is already reported from the server's record."""
    return resource.startswith(server.url)


def _screenshot(driver, path: Path) -> None:
    """A full-page PNG (cut at SCREENSHOT_MAX_HEIGHT px): the window made as tall as the page, so
    the theme lays it out as a reader sees it (a clipped capture beyond the viewport shifts the
    scrolled content against the sticky sidebars)."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    page_height = driver.execute_script("return document.documentElement.scrollHeight;")
    try:
        driver.set_window_size(width, min(int(page_height), SCREENSHOT_MAX_HEIGHT))
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(width, height)


# -- a whole site -----------------------------------------------------------------------------------


def site_pages(root: Path) -> list[str]:
    """Every HTML page of a built site, relative to ``root``, without the theme's and Sphinx's assets."""
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root)
        if not SKIPPED_DIRS.intersection(rel.parts[:-1]):
            pages.append(rel.as_posix())
    return pages


def check_site(root: Path, pages: Iterable[str] | None = None, screenshots: Path | None = None) -> list[PageReport]:
    """Open every page of the site in ``root`` (or only ``pages``) in one Chromium; one report each."""
    root = Path(root)
    pages = site_pages(root) if pages is None else list(pages)
    with serve(root) as server, start_chromium() as driver:
        return [check_page(driver, server, page, screenshots) for page in pages]


def screenshots_dir() -> Path | None:
    """The folder named by MRCNN_NP_BOOK_SCREENSHOTS, or None when the variable is unset or empty."""
    value = os.environ.get("MRCNN_NP_BOOK_SCREENSHOTS", "")
    return Path(value) if value else None
