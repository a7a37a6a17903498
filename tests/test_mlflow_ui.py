"""MLflow's own UI on a store a smoke-sized quickstart sweep produced, opened in a real headless browser
(Chromium): the link the sweep prints opens the runs table with every trial as a row and the objectives as
columns, and the parent run's page shows the sweep's description with its front and the report command.

What is checked is the page's text (its DOM after MLflow's scripts ran), not its pixels; a screenshot of
the runs table is kept beside the test's files (``tmp_path``) to look at.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests
from mlflow.tracking import MlflowClient

from coded_resnext.orchestration.cli import main
from coded_resnext.results.schema import DEFAULT_OBJECTIVES, MODEL_DEVELOPMENT, Role, Tag

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "search_spaces", "quickstart.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _page_text(browser_args: list[str], url: str) -> str:
    """The visible text of ``url`` once its scripts have run (tags, scripts and styles stripped)."""
    done = subprocess.run(
        [*browser_args, "--virtual-time-budget=30000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", "", done.stdout, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A smoke quickstart sweep's store served by ``mlflow server``: (address, store URI, the sweep's stdout)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    work = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    started_in = os.getcwd()
    os.chdir(work)
    try:
        out = work / "sweep.out"
        with open(out, "w") as stream:
            saved, sys.stdout = sys.stdout, stream
            try:
                assert main(["tune", QUICKSTART, "--smoke-test", "--tracking-uri", uri, "--num-cpus", "2"]) == 0
            finally:
                sys.stdout = saved
    finally:
        os.chdir(started_in)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(f"{address}/health", timeout=10).ok:
                    break
            except requests.RequestException:  # not listening yet, or slow to answer on a busy machine
                pass
            assert time.monotonic() < deadline, "mlflow server did not start in 300 s"
            time.sleep(1)
        yield address, uri, out.read_text()
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(2400)  # a smoke sweep first: minutes on a busy 2-core machine
@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (scripts/env.sh installs it)")
def test_the_sweeps_link_opens_mlflows_runs_table_on_its_trials_with_their_objectives(ui, tmp_path):
    address, uri, printed = ui
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("quickstart")
    assert experiment.tags[Tag.EXPERIMENT_KIND] == MODEL_DEVELOPMENT
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(Tag.ROLE) == Role.SWEEP]
    trials = [r for r in runs if r.data.tags.get(Tag.ROLE) == Role.TRIAL]
    assert len(trials) == 4  # 3 smoke trials and the reference control
    link = re.search(r"its trials: +http://127\.0\.0\.1:5000/(\S+)", printed)
    assert link, printed
    browser = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900",
    ]  # fmt: skip

    page = _page_text(browser, f"{address}/{link.group(1)}")
    assert "Send your first trace" not in page  # not the GenAI tracing page
    assert "Runs - Experiment" in page and "Sort: val/accuracy" in page
    for trial in trials:  # every trial is a row, named by its id and configuration
        assert trial.info.run_name in page, trial.info.run_name
    assert "reference control" in page
    assert parent.info.run_name not in page  # the trials themselves, not one collapsed parent row
    for objective in DEFAULT_OBJECTIVES:
        assert objective in page  # a column header
    assert f"{len(trials)} matching runs" in page

    # the parent run's page: the sweep's description, its front and how to get the report
    run_page = _page_text(browser, f"{address}/#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}")
    assert "Sweep quickstart" in run_page and "Pareto front" in run_page
    assert f"coded-resnext report quickstart --parent {parent.info.run_id}" in run_page

    shot = tmp_path / "mlflow_runs_table.png"
    subprocess.run(
        [*browser, "--virtual-time-budget=30000", f"--screenshot={shot}", f"{address}/{link.group(1)}"],
        capture_output=True, timeout=180, check=False,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # what a person sees (kept in tmp_path)
