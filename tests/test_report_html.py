"""The report's HTML opened in a real headless browser (Chromium): every embedded figure decodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from synthetic_runs import SyntheticSpec, write_synthetic_experiment

from coded_resnext.results.report import ReportOptions, build_report

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

# Appended to a copy of the report: on load, the page title becomes the state of every <img>.
PROBE = """<script>
window.addEventListener("load", () => {
  document.title = "IMAGES:" + JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]));
});
</script>"""


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (scripts/env.sh installs it)")
def test_report_html_renders_its_images_in_a_browser(tmp_path):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    write_synthetic_experiment(uri, SyntheticSpec("browse", runs=6, kind="sweep", epochs=2))
    report = build_report("browse", tmp_path / "out", ReportOptions(tracking_uri=uri))
    page = tmp_path / "probe.html"
    page.write_text(report.html.read_text() + PROBE)
    result = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    match = re.search(r"<title>IMAGES:(.*?)</title>", result.stdout)
    assert match, f"the page did not load in {BROWSER}: {result.stderr[-2000:]}"
    images = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(images) == len(report.figures) >= 4
    for complete, width, height in images:
        assert complete and width > 100 and height > 100  # decoded, not a broken-image icon
    assert "Pareto front" in result.stdout


# Appended to a copy of the report: on load, the page title becomes the viewport's width and every element
# that reaches past it (tag, class, right edge), and each image's drawn width against its file's width.
LAYOUT_PROBE = """<script>
window.addEventListener("load", () => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.body.querySelectorAll("*")]
    .map(e => [e.tagName, e.className, Math.ceil(e.getBoundingClientRect().right)])
    .filter(([, , right]) => right > width);
  const images = [...document.images].map(i => [i.clientWidth, i.naturalWidth]);
  document.title = "LAYOUT:" + JSON.stringify({width, scroll: document.documentElement.scrollWidth, wide, images});
});
</script>"""


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (scripts/env.sh installs it)")
def test_the_quickstart_report_fits_a_1280_px_window_with_nothing_clipped(tmp_path):
    """What a person sees: long scheme specs and legends used to widen the tables past the window and
    push figures' legends off their edge."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = SyntheticSpec("quick", runs=8, kind="sweep", epochs=3, quickstart=True, dataset="fashion-mnist")
    write_synthetic_experiment(uri, spec)
    report = build_report("quick", tmp_path / "out", ReportOptions(tracking_uri=uri))
    html = report.html.read_text()
    assert "Which parameters mattered" in html and "parallel_coordinates" not in html  # embedded, not linked
    assert "generate:active=4,min_distance=4,seed=0" in html  # the full spec is still there, as a tooltip
    page = tmp_path / "layout.html"
    page.write_text(html + LAYOUT_PROBE)
    common = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2000"]
    result = subprocess.run(
        [*common, "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    match = re.search(r"<title>LAYOUT:(.*?)</title>", result.stdout)
    assert match, f"the page did not load in {BROWSER}: {result.stderr[-2000:]}"
    layout = json.loads(match.group(1).replace("&quot;", '"'))
    assert layout["width"] == 1280 and layout["scroll"] <= 1280  # no horizontal scroll
    assert layout["wide"] == []  # no element reaches past the window's right edge
    assert len(layout["images"]) == len(report.figures)
    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", report.html.as_uri()], capture_output=True, timeout=120, check=False
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # what a person would see (kept in tmp_path)
