"""bench/paired.py: two runs paired by utterance, the difference's mean and spread."""

import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "paired.py"), *map(str, args)], capture_output=True, text=True)


def test_codec_runs_pair_by_utterance_and_leave_out_the_unpaired(tmp_path):
    a = {"vqspeech-parallel": [{"utterance": u, "pesq_wb": p, "stoi": 0.8} for u, p in [("x", 1.0), ("y", 2.0), ("z", 3.0)]]}
    b = {"vqspeech-parallel": [{"utterance": u, "pesq_wb": p, "stoi": 0.8} for u, p in [("y", 2.5), ("x", 1.1), ("w", 9.0)]]}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    out = run(tmp_path / "a.json", tmp_path / "b.json")
    assert out.returncode == 0, out.stderr
    assert "2 pairs (2 unpaired left out)" in out.stdout
    assert "pesq_wb: +0.3000 ± 0.2000 (B higher on 2 of 2)" in out.stdout  # differences 0.1 and 0.5
    assert "stoi: +0.0000 ± 0.0000 (B higher on 0 of 2)" in out.stdout
    bad = run(tmp_path / "a.json", tmp_path / "b.json", "--system", "opus-6k")
    assert bad.returncode != 0 and "no system 'opus-6k'" in bad.stderr


def test_conversion_runs_pair_by_source_and_target(tmp_path):
    def write(path, said):
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, ["source", "sentence", "target", "system", "id_resemblyzer", "id_mfcc", "words"])
            w.writeheader()
            for target, hit in said:
                w.writerow({"source": "SF1", "sentence": "100151", "target": target, "system": "vqspeech",
                            "id_resemblyzer": hit, "id_mfcc": hit, "words": 0.5})
            w.writerow({"source": "SF1", "sentence": "100151", "target": "t1", "system": "none",
                        "id_resemblyzer": True, "id_mfcc": True, "words": 1.0})
    write(tmp_path / "a.csv", [("t1", False), ("t2", False), ("t3", True)])
    write(tmp_path / "b.csv", [("t1", True), ("t2", False), ("t3", True)])
    out = run(tmp_path / "a.csv", tmp_path / "b.csv")
    assert out.returncode == 0, out.stderr
    assert "3 pairs" in out.stdout and "id_resemblyzer: +0.3333 ± 0.3333 (B higher on 1 of 3)" in out.stdout
