"""The libFuzzer targets (fuzz/, scripts/fuzz.sh) as tests: replay the kept corpus and crash
reproducers (regression), then fuzz each target briefly (FUZZ_SECONDS, default 20).

scripts/fuzz.sh installs clang-14 when missing (as root); without it (and not root) these tests
skip with the exact command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fuzz.sh"
TARGETS = ["frame_reader", "apply", "snapshot", "dispatch", "client_frame"]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))

pytestmark = pytest.mark.slow


def _fuzz(*args: str, timeout: float) -> subprocess.CompletedProcess:
    r = subprocess.run([str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, errors="replace",
                       timeout=timeout, check=False)
    if r.returncode == 3:  # fuzz.sh: toolchain missing and not root
        pytest.skip("clang-14 missing: " + r.stderr.strip())
    return r


@pytest.fixture(scope="module", autouse=True)
def built():
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: scripts/fuzz.sh needs apt")
    r = _fuzz("build", timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_and_crash_reproducers_replay_clean(target):
    r = _fuzz("replay", target, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_briefly(target, tmp_path):
    # Into a scratch corpus copy, so a CI run does not rewrite the committed corpus.
    env_dir = tmp_path / "corpus"
    shutil.copytree(ROOT / "fuzz" / "corpus" / target, env_dir)
    binary = ROOT / "build" / "fuzz" / f"{target}_fuzz"
    # A fixed seed: what a CI run finds can be found again from the same command.
    args = [str(binary), "-seed=1", f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
            "-timeout=20",
            f"-artifact_prefix={tmp_path}/", str(env_dir)]
    if target == "dispatch":
        args.insert(1, "-detect_leaks=0")
    r = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=SECONDS + 120, check=False)
    crashes = [p.name for p in tmp_path.iterdir() if p.is_file()]
    assert r.returncode == 0 and not crashes, (
        f"{target} found a problem; reproducer(s) {crashes} in {tmp_path} (copy them to "
        f"fuzz/crashes/{target}/ once fixed)\n" + r.stderr[-4000:])
    assert "DONE" in r.stderr
