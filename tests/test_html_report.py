"""The HTML report: one self-contained, escaped page; and, in a real headless Chromium (Debian's
``chromium`` driven by Playwright), a page that renders, sorts, and requests nothing from anywhere."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightlint
from weightlint.cli import main
from weightlint.reporters import html as html_report
from weightlint.reporters import html_plots

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def hostile_checkpoint(folder: Path) -> Path:
    """A checkpoint whose tensor names try to break out of the page."""
    rng = np.random.default_rng(0)
    tensors = {f"h.{i}.attn.weight": (rng.standard_normal((64, 64)) * 0.05).astype(np.float32) for i in range(4)}
    tensors['h.2.<script>alert("x")</script>.weight'] = np.zeros((64, 64), np.float32)
    tensors["h.1.$\\alpha$&amp;.weight"] = (rng.standard_normal((64, 64)) * 0.05).astype(np.float32)
    path = folder / "model.safetensors"
    save_file(tensors, str(path))
    return path


def test_names_are_escaped_and_the_page_is_closed_to_the_network(tmp_path):
    path = hostile_checkpoint(tmp_path)
    assert main([str(path), "--html", str(tmp_path / "report.html"), "-q"]) == weightlint.ExitCode.FINDINGS
    page = (tmp_path / "report.html").read_text()
    assert page.count("<script>") == 1  # ours, at the end
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "default-src 'none'" in page and 'http-equiv="Content-Security-Policy"' in page
    # No resource outside the page: no src/href to anything but in-page fragments (SVG glyph uses).
    assert not re.search(r'(?:src|href)\s*=\s*"(?!#)', page)
    assert not re.search(r"url\((?!#)", page)


def test_without_matplotlib_the_page_keeps_its_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(html_plots, "available", lambda: False)
    report = weightlint.check(str(hostile_checkpoint(tmp_path)))
    page = html_report.render(report)
    assert "<svg" not in page and 'pip install "weightlint[html]"' in page
    assert 'id="tensors"' in page and 'id="heatmap"' in page


def test_watch_reports_draw_the_norm_ratio_over_checkpoints(tmp_path):
    from tests.test_training_health import write_run

    write_run(tmp_path / "run")
    assert main(["watch", str(tmp_path / "run"), "--format", "html", "-o", str(tmp_path / "watch.html"),
                 "-q"]) == weightlint.ExitCode.FINDINGS
    page = (tmp_path / "watch.html").read_text()
    assert "Norm ratio over checkpoints" in page and "checkpoint-300" in page


def test_the_json_report_carries_the_plot_summaries_when_html_is_asked(tmp_path):
    path = hostile_checkpoint(tmp_path)
    main([str(path), "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"), "-q"])
    sketch = json.loads((tmp_path / "r.json").read_text())["tensors"]["h.0.attn.weight"]["sketch"]
    assert len(sketch["esd"]["counts"]) == 40 and len(sketch["histogram"]["counts"]) == 48


# -- a real browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`; .ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        yield launched
        launched.close()


def open_report(browser, page_file: Path, screenshot: Path):
    """The page loaded with every request recorded (anything but the file itself is refused)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []

    def route(request_route):
        requests.append(request_route.request.url)
        if request_route.request.url == page_file.as_uri():
            request_route.continue_()
        else:
            request_route.abort()

    page.route("**/*", route)
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(screenshot), full_page=True)
    return page, requests


def not_blank(screenshot: Path) -> bool:
    from PIL import Image

    pixels = np.asarray(Image.open(screenshot).convert("L"))
    return pixels.std() > 10 and (pixels < 128).mean() > 0.005


@pytest.mark.parametrize("model", ["minilm", "demo"])
def test_the_report_renders_in_a_real_chromium(browser, model, minilm, tmp_path):
    if model == "minilm":
        target = str(minilm)
    else:
        assert main(["demo", "--dir", str(tmp_path / "demo"), "-q"]) == weightlint.ExitCode.OK
        target = str(tmp_path / "demo")
    page_file = tmp_path / "report.html"
    main([target, "--html", str(page_file), "-q", "--exit-zero"])
    page, requests = open_report(browser, page_file, tmp_path / "screenshot.png")
    assert requests == [page_file.as_uri()]  # nothing else was requested
    assert not_blank(tmp_path / "screenshot.png")
    assert page.locator("#heatmap td").count() >= 16  # 4 roles × 4 layers in the demo, 6 × 6 in MiniLM
    assert page.locator("svg").count() >= 1
    # Sorting: click the condition-number header, twice for descending.
    header = page.locator("#tensors th", has_text="condition")
    column = [cell.inner_text() for cell in page.locator("#tensors th").all()].index("condition")

    def values():
        cells = page.locator(f"#tensors tbody tr td:nth-child({column + 1})").all()
        return [float(v) for v in (cell.get_attribute("data-value") for cell in cells) if v]

    header.click()
    assert values() == sorted(values()) and len(values()) > 10
    header.click()
    assert values() == sorted(values(), reverse=True)
    page.locator("#filter").fill("query" if model == "minilm" else "c_attn")
    visible = page.locator("#tensors tbody tr:visible").count()
    assert 0 < visible < page.locator("#tensors tbody tr").count()
    page.close()


def test_diff_reports_draw_the_change_across_depth(tmp_path):
    rng = np.random.default_rng(0)
    old = {f"h.{i}.mlp.weight": (rng.standard_normal((32, 32)) * 0.02).astype(np.float32) for i in range(4)}
    new = {name: value * (20 if name == "h.2.mlp.weight" else 1.01) for name, value in old.items()}
    save_file(old, str(tmp_path / "old.safetensors"))
    save_file(new, str(tmp_path / "new.safetensors"))
    assert main(["diff", str(tmp_path / "old.safetensors"), str(tmp_path / "new.safetensors"), "--format", "html",
                 "-o", str(tmp_path / "diff.html"), "-q"]) == weightlint.ExitCode.FINDINGS
    page = (tmp_path / "diff.html").read_text()
    assert "<th>norm ratio</th>" in page and "weightlint diff report" in page
    assert "WL701" in page and (not html_plots.available() or page.count("<svg") >= 2)
