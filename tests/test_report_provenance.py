"""A report folder records what computed it: provenance.json with the environment (commit,
library hash, versions, device, threads) and each run's store record (wall and CPU seconds)."""

from __future__ import annotations

import json
from pathlib import Path

from alphaprune.report.runner import run_provenance


def test_each_linked_run_brings_its_seconds_and_threads(tmp_path: Path) -> None:
    store, folder = tmp_path / "store", tmp_path / "week" / "runs"
    folder.mkdir(parents=True)
    for name, fp, done in [
        ("baseline", "a" * 16, {"seconds": 12.5, "cpu_seconds": 20.0, "threads": 2}),
        ("decay", "b" * 16, None),  # not finished: no record to vouch for
    ]:
        (store / fp).mkdir(parents=True)
        if done is not None:
            (store / fp / "done.json").write_text(json.dumps({"fingerprint": fp, **done}))
        (folder / name).symlink_to(store / fp)
    records = run_provenance(tmp_path / "week")
    assert list(records) == ["baseline"]
    assert records["baseline"]["fingerprint"] == "a" * 16
    assert records["baseline"]["cpu_seconds"] == 20.0 and records["baseline"]["threads"] == 2
