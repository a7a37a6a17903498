"""The report's HTML opened in a real headless browser (Chromium): every embedded figure decodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from synthetic_runs import SyntheticSpec, write_synthetic_experiment

from results.report import ReportOptions, build_report

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
