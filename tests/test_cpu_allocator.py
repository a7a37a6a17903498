"""retain_freed_memory: after it, a forward pass reuses freed activation memory instead of page-faulting
it in again (counted as minor page faults, not timed). Runs in subprocesses: the setting is process-wide."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from coded_resnext.measure.cpu_allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
torch.set_num_threads(1)
conv = torch.nn.Conv2d(64, 64, 3, padding=1)
x = torch.randn(16, 64, 32, 32)  # 4 MiB activations
with torch.no_grad():
    for _ in range(3):
        conv(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        y = conv(torch.relu(x)) + x
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_retained_memory_removes_the_page_faults_of_repeated_forward_passes():
    default, retained = _page_faults("default"), _page_faults("retain")
    assert default > 30 * 256  # glibc as it is: each pass faults its 4 MiB activations in again (4 KiB pages)
    assert retained * 10 < default
