"""Open a run's index.html in headless Chromium: count the images that did not load, and take a screenshot.

    python -m diffrep.report.check_page out/quickstart [--screenshot page.png]

A copy of the page gets a script that, once everything has loaded, writes into the DOM how many images there are
and how many did not decode; Chromium's --dump-dom prints that DOM. Pages of the runs inside it are checked too.
Exit code 1 if an image is broken, 2 if Chromium is missing.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PROBE = """<script>addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(img => !img.complete || img.naturalWidth === 0).length;
  document.body.setAttribute("data-check", `images=${images.length} broken=${broken}`);
});</script>"""


def browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(exe: str, *args: str) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120).stdout


def check(page: Path, screenshot: Path | None = None, exe: str | None = None) -> dict[str, int]:
    """{"images": n, "broken": k} for one page (its links are not followed); a screenshot if asked."""
    exe = exe or browser()
    if exe is None:
        raise FileNotFoundError(f"no Chromium found ({', '.join(BROWSERS)})")
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "page.html"  # beside the copy nothing resolves: every image must be inlined
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        found = re.search(r'data-check="images=(\d+) broken=(\d+)"', _chromium(exe, "--dump-dom", probed.as_uri()))
    if not found:
        raise RuntimeError(f"Chromium did not load {page}")
    if screenshot is not None:
        _chromium(exe, f"--screenshot={screenshot.resolve()}", "--window-size=1200,1600", page.resolve().as_uri())
    return {"images": int(found.group(1)), "broken": int(found.group(2))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a run folder with an index.html (e.g. out/quickstart)")
    parser.add_argument("--screenshot", type=Path, help="PNG of the top page as Chromium draws it")
    args = parser.parse_args(argv)
    exe = browser()
    if exe is None:
        print(f"check_page: no Chromium found ({', '.join(BROWSERS)}); apt-get install chromium", file=sys.stderr)
        return 2
    pages = sorted(args.out.rglob("index.html"), key=lambda p: (len(p.parts), p))
    if not pages:
        print(f"check_page: no index.html under {args.out}", file=sys.stderr)
        return 2
    broken = 0
    for page in pages:
        try:
            result = check(page, args.screenshot if page == pages[0] else None, exe)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            print(f"check_page: {err}", file=sys.stderr)
            return 2
        broken += result["broken"]
        print(f"{page}: {result['images']} images, {result['broken']} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
