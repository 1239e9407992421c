"""bench/prior_curves.py: prior runs' held-out bits per code side by side, each judged at its best validation."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = "step,cpu_hours,valid-vcc2016/bits/code,valid-vcc2016/payload_bps,unseen/bits/code\n"


def test_each_run_is_judged_at_its_lowest_held_out_bits(tmp_path):
    for name, rows in {"a": ["500,0.1,3.0,900,2.5", "1000,0.2,2.8,850,2.6"], "b": ["500,0.1,2.9,880,2.4"]}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "valid.csv").write_text(HEADER + "\n".join(rows) + "\n")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "prior_curves.py"), f"{tmp_path / 'a'}=overfits",
                          f"{tmp_path / 'b'}=short", "--name", "curves", "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "curves.md").read_text()
    assert "| 1000 | 0.200 | 2.800 | 2.600 |" in text
    assert "| overfits | 2.800 (1000) | 2.500 (500) | 0.20 |" in text  # the unseen set was best before the end
    assert "| short | 2.900 (500) | 2.400 (500) | 0.10 |" in text
    assert "| short | 500 | -3.3 | -4.0 |" in text  # against the first run at the one step both reached
    missing = subprocess.run([sys.executable, str(REPO / "bench" / "prior_curves.py"), str(tmp_path / "none"), "--name", "x",
                              "--out", str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode != 0 and "none/valid.csv: no such file" in missing.stderr
