"""The built book, opened page by page in headless Chromium (:mod:`tests.book.browser`).

Every page must load with no missing resource (404 or failed load), no undecoded ``<img>``, no
console error, and every chapter page must show figures. The checker is proven to fail: on a
small synthetic site with each kind of fault, and on a copy of the real book with one image
removed and one JavaScript error injected.

The book is ``book/_build/html`` when it exists (CI builds it first); otherwise it is built here
with ``scripts/build_book.sh`` (slow: every chapter is executed). Without chromium and
chromedriver the tests are skipped, unless MRCNN_NP_REQUIRE_BROWSER=1, where they fail.
With MRCNN_NP_BOOK_SCREENSHOTS=folder, a screenshot of every page of the book is saved there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.book import browser

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
BOOK_HTML = BOOK / "_build" / "html"
BUILD_TIMEOUT_S = 3600


@pytest.fixture(autouse=True, scope="session")
def _chromium():
    reason = browser.missing_browser()
    if reason is None:
        return
    if os.environ.get("MRCNN_NP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MRCNN_NP_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def built_book(_chromium) -> Path:
    """book/_build/html, built now (every chapter executed) when it is not there yet (and Chromium is here)."""
    if not (BOOK_HTML / "index.html").is_file():
        run = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build_book.sh")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        log = (run.stdout + run.stderr)[-6000:]
        assert run.returncode == 0, f"scripts/build_book.sh failed ({run.returncode}):\n{log}"
    return BOOK_HTML


def toc_chapters() -> list[str]:
    """The chapter files of book/_toc.yml (e.g. "notebooks/01_backbone"), in order."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    return [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]


# -- the real book ---------------------------------------------------------------------------------


def test_every_page_of_the_book_loads_cleanly(built_book):
    pages = browser.site_pages(built_book)
    expected = ["index.html", "intro.html"] + [f"{chapter}.html" for chapter in toc_chapters()]
    assert not set(expected) - set(pages), f"pages missing from the built book: {set(expected) - set(pages)}"

    reports = browser.check_site(built_book, pages, screenshots=browser.screenshots_dir())

    offline = sorted({note.split(" ")[0] for report in reports for note in report.offline})
    if offline:
        warnings.warn(f"not loaded for lack of network (math shows as TeX source): {offline}", stacklevel=1)
    problems = [problem for report in reports for problem in report.problems]
    assert not problems, f"{len(problems)} problem(s) in the book:\n" + "\n".join(problems)
    chapters = [report for report in reports if report.is_chapter]
    assert len(chapters) == sum(chapter.startswith(browser.CHAPTER_PREFIX) for chapter in toc_chapters())
    assert all(report.figures > 0 for report in chapters)


def test_chapter_pages_have_binder_and_colab_launch_buttons(built_book):
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    repo = config["repository"]["url"].rstrip("/")
    org_repo = repo.removeprefix("https://github.com/")
    branch = config["repository"]["branch"]
    for chapter in (c for c in toc_chapters() if c.startswith(browser.CHAPTER_PREFIX)):
        html = (built_book / f"{chapter}.html").read_text()
        notebook = f"{chapter}.ipynb"
        assert (ROOT / notebook).is_file(), f"the launch buttons of {chapter} would open a missing {notebook}"
        binder = f"https://mybinder.org/v2/gh/{org_repo}/{branch}?urlpath=lab/tree/{notebook}"
        colab = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{notebook}"
        links = set(re.findall(r'href="([^"]+)"', html.replace("&amp;", "&")))
        assert binder in links, f"{chapter}: no Binder link {binder}"
        assert colab in links, f"{chapter}: no Colab link {colab}"


def test_checker_finds_an_image_removed_from_a_copy_of_the_book(built_book, tmp_path):
    copy = tmp_path / "html"
    shutil.copytree(built_book, copy)
    chapter = next(f"{c}.html" for c in toc_chapters() if c.startswith(browser.CHAPTER_PREFIX))
    images = re.findall(r'<img[^>]+src="(\.\./_images/[^"]+)"', (copy / chapter).read_text())
    assert images, f"{chapter} references no image in _images/"
    removed = (copy / chapter).parent / images[0]
    removed.unlink()
    intro = copy / "intro.html"
    intro.write_text(intro.read_text().replace("</body>", '<script>throw new Error("injected fault")</script></body>'))

    chapter_report, intro_report = browser.check_site(copy, [chapter, "intro.html"])

    name = removed.name
    assert any("missing resource" in p and name in p for p in chapter_report.problems), chapter_report.problems
    assert any("undecoded image" in p and name in p for p in chapter_report.problems), chapter_report.problems
    assert all(name in p for p in chapter_report.problems), chapter_report.problems  # the image, nothing else
    assert len(intro_report.problems) == 1 and "injected fault" in intro_report.problems[0], intro_report.problems


# -- the checker, on a synthetic site with one fault of each kind --------------------------------------


PAGES = {
    "clean.html": '<img src="ok.png"><figure><img src="ok.png"></figure>',
    "images.html": '<img src="ok.png"><img src="missing.png"><img src="not_an_image.png">',
    "styles.html": '<link rel="stylesheet" href="gone.css"><script src="gone.js"></script><p>text</p>',
    "console.html": '<script>console.error("logged failure")</script><p>text</p>',
    "thrown.html": '<script>throw new Error("uncaught failure")</script><p>text</p>',
    "external.html": (
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
        '<script src="https://cdn.example.invalid/library.js"></script><p>text</p>'
    ),
    "notebooks/chapter_without_figures.html": '<img src="../ok.png"><div class="cell_output">no plot</div>',
    "notebooks/chapter_with_figure.html": '<div class="cell_output"><img src="../ok.png"></div>',
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, browser.PageReport]:
    import matplotlib.image

    site = tmp_path_factory.mktemp("site")
    (site / "notebooks").mkdir()
    for page, body in PAGES.items():
        (site / page).write_text(f"<!DOCTYPE html><html><head><title>{page}</title></head><body>{body}</body></html>")
    matplotlib.image.imsave(site / "ok.png", np.linspace(0, 1, 48).reshape(4, 4, 3))
    (site / "not_an_image.png").write_bytes(b"this is not a PNG")
    assert set(browser.site_pages(site)) == set(PAGES)
    return {report.page: report for report in browser.check_site(site)}


def test_checker_passes_clean_pages(synthetic):
    assert synthetic["clean.html"].problems == []
    assert synthetic["notebooks/chapter_with_figure.html"].problems == []
    assert synthetic["notebooks/chapter_with_figure.html"].figures == 1


def test_checker_reports_missing_and_undecoded_images(synthetic):
    problems = synthetic["images.html"].problems
    assert any(p.startswith("images.html: missing resource: /missing.png (HTTP 404)") for p in problems), problems
    undecoded = [p for p in problems if "undecoded image" in p]
    assert len(undecoded) == 2, problems
    assert any("missing.png" in p for p in undecoded) and any("not_an_image.png" in p for p in undecoded)
    assert not any("/ok.png" in p for p in problems)


def test_checker_reports_missing_css_and_js(synthetic):
    problems = synthetic["styles.html"].problems
    assert any("missing resource: /gone.css (HTTP 404)" in p for p in problems), problems
    assert any("missing resource: /gone.js (HTTP 404)" in p for p in problems), problems


def test_checker_tolerates_only_mathjax_without_network(synthetic):
    report = synthetic["external.html"]
    assert any("missing resource: https://cdn.example.invalid/library.js" in p for p in report.problems), (
        report.problems
    )
    assert not any("mathjax" in p for p in report.problems), report.problems  # loaded, or in report.offline


def test_checker_reports_console_errors_and_uncaught_exceptions(synthetic):
    assert [p for p in synthetic["console.html"].problems if "console error" in p and "logged failure" in p]
    assert [p for p in synthetic["thrown.html"].problems if "console error" in p and "uncaught failure" in p]


def test_checker_reports_a_chapter_page_without_figures(synthetic):
    problems = synthetic["notebooks/chapter_without_figures.html"].problems
    assert problems == [
        "notebooks/chapter_without_figures.html: no figures: a chapter page shows no decoded image in its outputs"
    ]
