"""Checks the built site as a person would see it, in headless Chromium, with no network.

Usage: python docs/check_site.py [docs/_build/html] [--screenshots DIR]

1. Every internal link and resource of every page resolves to a file of the site, and no page loads
   anything from another host (the site works offline).
2. The site is served on 127.0.0.1 and opened in headless Chromium (Debian's ``chromium`` and
   ``chromium-driver``, driven by selenium): the landing page, an API page with formulas and a gallery
   page. On the API page MathJax's output elements (``mjx-container``) exist and no raw TeX
   (``\\frac``) is visible; on the gallery page every image loaded (natural width > 0). A screenshot of
   each page is saved.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import pathlib
import shutil
import sys
import threading
import time
import urllib.parse

PAGES = {  # screenshot name -> page, relative to the site's root
    "landing": "index.html",
    "api_optimizers": "_generated/api/optimizers.html",
    "gallery_pathological_curvature": "_generated/gallery/pathological_curvature.html",
}


class _Links(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.links = []

  def handle_starttag(self, tag, attrs):
    for name, value in attrs:
      if value and ((tag == "a" and name == "href") or (name == "src") or (tag == "link" and name == "href")):
        self.links.append((tag, value))


def check_links(root: pathlib.Path) -> int:
  """Every internal link resolves; no page loads a resource from another host. Returns the page count."""
  broken, external, pages = [], [], sorted(root.rglob("*.html"))
  for page in pages:
    parser = _Links()
    parser.feed(page.read_text(errors="replace"))
    for tag, link in parser.links:
      parsed = urllib.parse.urlparse(link)
      if parsed.scheme in ("http", "https") or link.startswith("//"):
        if tag != "a":  # a link a reader may follow is fine; a script, style or image must be local
          external.append(f"{page.relative_to(root)}: {link}")
        continue
      if parsed.scheme or not parsed.path:  # mailto:, data:, javascript:, or "#anchor" on the same page
        continue
      target = (page.parent / urllib.parse.unquote(parsed.path)).resolve()
      if target.is_dir():
        target = target / "index.html"
      if not target.exists():
        broken.append(f"{page.relative_to(root)} -> {link}")
  if broken or external:
    raise SystemExit("broken internal links:\n  " + "\n  ".join(broken) +
                     "\nresources loaded from another host:\n  " + "\n  ".join(external))
  return len(pages)


def serve(root: pathlib.Path):
  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

  handler = functools.partial(Quiet, directory=str(root))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server


def browser():
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600",
               "--disable-dev-shm-usage"):
    options.add_argument(flag)
  options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
  service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
  return webdriver.Chrome(options=options, service=service)


def wait_for(driver, script, timeout=30.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = driver.execute_script(script)
    if value:
      return value
    time.sleep(0.2)
  return driver.execute_script(script)


def check_in_browser(root: pathlib.Path, screenshots: pathlib.Path) -> list[str]:
  screenshots.mkdir(parents=True, exist_ok=True)
  server = serve(root)
  base = f"http://127.0.0.1:{server.server_address[1]}/"
  driver = browser()
  saved = []
  try:
    for name, page in PAGES.items():
      driver.get(base + page)
      wait_for(driver, "return document.readyState === 'complete'")
      if name.startswith("api"):
        formulas = driver.execute_script("return document.querySelectorAll('.math').length")
        count = wait_for(driver, "const n = document.querySelectorAll('.math mjx-container').length;"
                         f"return n >= {formulas} ? n : 0")
        text = driver.execute_script("return document.body.innerText")
        assert formulas >= 5 and count >= formulas, f"{page}: MathJax rendered {count} of {formulas} formulas"
        assert "\\frac" not in text and "\\sqrt" not in text, f"{page}: raw TeX is visible"
        print(f"{page}: {count} formulas rendered by MathJax, no raw TeX visible")
      if name.startswith("gallery"):
        widths = wait_for(driver, "const imgs = [...document.querySelectorAll('article img')];"
                          "return imgs.length && imgs.every(i => i.complete) ? imgs.map(i => i.naturalWidth) : null")
        assert widths and all(w > 0 for w in widths), f"{page}: images not loaded: {widths}"
        print(f"{page}: {len(widths)} figures loaded (natural widths {widths})")
      if name == "landing":
        title = driver.title
        assert "gradxform" in title, title
        print(f"{page}: title {title!r}")
      path = screenshots / f"{name}.png"
      driver.save_screenshot(str(path))
      saved.append(str(path))
  finally:
    driver.quit()
    server.shutdown()
  return saved


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("site", nargs="?", default="docs/_build/html")
  parser.add_argument("--screenshots", default="docs/_build/screenshots")
  args = parser.parse_args()
  root = pathlib.Path(args.site).resolve()
  if not (root / "index.html").exists():
    sys.exit(f"{root} has no index.html: build the site first (see the README's docs command)")
  pages = check_links(root)
  print(f"{pages} pages, every internal link resolves, nothing is loaded from another host")
  for path in check_in_browser(root, pathlib.Path(args.screenshots)):
    print(f"screenshot: {path}")


if __name__ == "__main__":
  main()
