"""The command line: codes generate/check, models, bench; user mistakes end in one line, exit 2."""

import json
import subprocess
import sys

import pytest

from coded_resnext.coding import CodingScheme


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coded_resnext.orchestration.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_user_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("coded-resnext: error:"), result.stderr
    assert fragment in lines[0]


def test_codes_generate_writes_a_scheme_that_check_accepts(tmp_path):
    out = tmp_path / "s.json"
    gen = run_cli(
        "codes",
        "generate",
        "--classes",
        "10",
        "--branches",
        "10",
        "--active",
        "3",
        "--min-distance",
        "4",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    assert gen.returncode == 0, gen.stderr
    entry = json.loads(out.read_text())
    assert {
        "num_classes",
        "num_branches",
        "num_active",
        "min_hamming_distance",
        "column_sum_min",
        "column_sum_max",
        "codewords",
    } <= set(entry)
    scheme = CodingScheme.load(out)
    assert scheme.min_distance >= 4 and scheme.column_spread == 0
    check = run_cli("codes", "check", str(out))
    assert check.returncode == 0 and f"min_hamming_distance  {scheme.min_distance}" in check.stdout


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{oops", "malformed JSON"),
        ('{"codewords": ["1100", "1000"]}', "rule A"),
        ('{"codewords": ["1100", "1100"]}', "distinct"),
        ('{"codewords": ["1100", "011"]}', "same length"),
    ],
    ids=["malformed", "unequal-weights", "duplicates", "ragged"],
)
def test_codes_check_rejects_bad_files_in_one_line(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert_user_error(run_cli("codes", "check", str(path)), fragment)


def test_codes_check_missing_file():
    assert_user_error(run_cli("codes", "check", "/no/such/scheme.json"), "no such file")


def test_codes_generate_infeasible_request_is_one_line(tmp_path):
    out = tmp_path / "never.json"
    result = run_cli("codes", "generate", "-K", "11", "-N", "5", "-A", "1", "--out", str(out))
    assert_user_error(result, "11")
    assert not out.exists()


def test_bench_rejects_unknown_preset():
    assert_user_error(run_cli("bench", "model", "--preset", "nope", "--batch-size", "2"), "unknown preset 'nope'")


def test_bench_model_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench",
        "model",
        "--preset",
        "coded_resnext_mini",
        "--batch-size",
        "4",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--image-size",
        "28",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert set(data["median_ms"]) == {
        "train/coded",
        "train/control",
        "train/materialized",
        "infer/coded",
        "infer/control",
        "infer/materialized",
        "infer/binary",
    }
    assert 0 < data["binary"]["parameters (all)"] < 1 and 0 < data["binary"]["FLOPs"] < 1
    assert "train coded / control" in result.stdout


def test_every_subcommand_has_help():
    for args in (
        ["--help"],
        ["codes", "--help"],
        ["codes", "generate", "--help"],
        ["codes", "check", "--help"],
        ["bench", "model", "--help"],
        ["models", "--help"],
    ):
        result = run_cli(*args)
        assert result.returncode == 0 and "usage: coded-resnext" in result.stdout
