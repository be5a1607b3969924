"""Open every page of the built book in headless Chromium and check what a reader sees.

For every HTML page under the build folder (served on a loopback port), it asserts that

* every image has loaded (``complete`` and a natural width);
* every internal link resolves: the target file exists and, for a ``#fragment``, holds that id;
* the math is typeset: MathJax (served with the book, no network) rendered every math element,
  with no ``mjx-merror``;
* the explorers' static figures (``figure.mu-explorer``, see :mod:`mu_lib.explore`) show: their
  image loaded and has a size on the page; and the book holds at least ``--min-explorers`` of them;
* the browser console has no error (a failed request for a missing file is one; the browser's
  own request for ``/favicon.ico``, which the book does not link, is not counted).

Resources on other sites (the "Open in Colab" badge image) cannot load offline and are not the
book's: they are counted as external and not checked; everything the book serves itself is.

Chromium and ChromeDriver come from Debian's packages (``apt-get install chromium
chromium-driver``), driven by selenium; nothing is downloaded.

Usage: ``python tools/book_check.py [HTML_DIR] [--min-explorers N]`` (default ``_build/html``).
Exit status 1 if any page fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "jupyter_execute", ".doctrees"}
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1024")

_PAGE_JS = """
const done = arguments[arguments.length - 1];
const finish = () => {
  const imgs = [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}));
  const explorers = [...document.querySelectorAll('figure.mu-explorer')].map(f => {
    const img = f.querySelector('img'); const box = f.getBoundingClientRect();
    const shown = !!img && img.complete && img.naturalWidth > 0 && box.width > 0 && box.height > 0;
    return {name: f.dataset.explorer, ok: shown};
  });
  const math = document.querySelectorAll('.math, span.math, div.math').length;
  done({imgs, explorers, math,
        typeset: document.querySelectorAll('mjx-container').length,
        merrors: document.querySelectorAll('mjx-merror').length,
        mathjax: !!(window.MathJax && window.MathJax.startup),
        links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))});
};
if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
  window.MathJax.startup.promise.then(finish, finish);
} else { finish(); }
"""


def pages(root: Path) -> list[Path]:
    """Every HTML page of the build, outside the asset folders."""
    return sorted(p for p in root.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(root).parts[:-1]))


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', text))


def check_link(root: Path, page: Path, href: str) -> str | None:
    """``None`` if an internal link from ``page`` resolves, else what is wrong."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:", "data:")):
        return None  # external: not checked here (no network)
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    try:
        target.relative_to(root.resolve())
    except ValueError:
        return f"{href}: points outside the book"
    if not target.exists():
        return f"{href}: no such file"
    frag = unquote(parts.fragment)
    if frag and target.suffix == ".html" and frag not in _ids(target):
        return f"{href}: no element with id {frag!r} in {target.relative_to(root.resolve())}"
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D401 - silence the request log
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def browser(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = next((b for b in CHROMIUM if Path(b).exists()), None)
    driver_path = next((d for d in CHROMEDRIVER if Path(d).exists()), None) or shutil.which("chromedriver")
    if binary is None or driver_path is None:
        raise SystemExit("headless Chromium is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(60)
    driver.set_page_load_timeout(60)
    return driver


def _external(url: str, base: str) -> bool:
    """Whether ``url`` is an http(s) resource of another site than the served book."""
    return url.startswith(("http://", "https://")) and not url.startswith(base)


def check_book(root: Path, *, min_explorers: int = 0) -> tuple[list[str], dict]:
    """Check every page; returns the problems and a summary."""
    root = root.resolve()
    found = pages(root)
    if not found:
        return [f"no HTML page under {root}"], {}
    problems: list[str] = []
    summary = {"pages": len(found), "images": 0, "links": 0, "math": 0, "explorers": 0, "external": 0}
    server, base = serve(root)
    with tempfile.TemporaryDirectory(prefix="mu-chromium-") as profile:
        driver = browser(profile)
        try:
            for requested in found:
                driver.get(urljoin(base, requested.relative_to(root).as_posix()))
                res = driver.execute_async_script(_PAGE_JS)
                # A redirect page (the root index.html) shows another page: check links from there.
                shown = unquote(urlsplit(driver.current_url).path).lstrip("/") or "index.html"
                page = (root / shown).resolve()
                rel = requested.relative_to(root).as_posix() + ("" if page == requested.resolve() else f" -> {shown}")
                for img in res["imgs"]:
                    if _external(img["src"], base):
                        summary["external"] += 1
                    elif not img["ok"]:
                        problems.append(f"{rel}: image did not load: {img['src'][:120]}")
                for ex in res["explorers"]:
                    if not ex["ok"]:
                        problems.append(f"{rel}: the static figure of explorer {ex['name']!r} does not show")
                if res["math"] and not res["mathjax"]:
                    problems.append(f"{rel}: {res['math']} math elements but MathJax did not load")
                elif res["math"] and res["typeset"] == 0:
                    problems.append(f"{rel}: {res['math']} math elements, none typeset")
                if res["merrors"]:
                    problems.append(f"{rel}: {res['merrors']} math elements failed to typeset (mjx-merror)")
                for href in sorted(set(res["links"])):
                    err = check_link(root, page, href)
                    if err:
                        problems.append(f"{rel}: broken link {err}")
                for entry in driver.get_log("browser"):
                    # The browser's own request for /favicon.ico is no resource of the book.
                    # A failed request to another site (offline) is no error of the book.
                    message = entry.get("message", "")
                    if (entry.get("level") == "SEVERE" and "/favicon.ico" not in message
                            and not _external(message.split(" ", 1)[0], base)):
                        problems.append(f"{rel}: console error: {entry.get('message', '')[:300]}")
                summary["images"] += len(res["imgs"])
                summary["links"] += len(res["links"])
                summary["math"] += res["typeset"]
                summary["explorers"] += len(res["explorers"])
        finally:
            driver.quit()
            server.shutdown()
    if summary["explorers"] < min_explorers:
        problems.append(f"the book shows {summary['explorers']} explorer figures, expected at least {min_explorers}")
    return problems, summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", default="_build/html", help="the built HTML folder")
    parser.add_argument("--min-explorers", type=int, default=0, help="explorer figures the book must show")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    problems, summary = check_book(Path(args.html), min_explorers=args.min_explorers)
    for p in problems:
        print("FAIL", p)
    print(f"book-check: {summary.get('pages', 0)} pages, {summary.get('images', 0)} images, "
          f"{summary.get('links', 0)} links, {summary.get('math', 0)} typeset formulas, "
          f"{summary.get('explorers', 0)} explorer figures ({summary.get('external', 0)} images on other "
          f"sites not checked); {len(problems)} problems "
          f"({time.perf_counter() - start:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
