"""The finished-work log every resumable job keeps (eval samples, D_syn traces, hints, STaR's rows)."""

import json

import pytest

from dail_harness.errors import HarnessError
from dail_harness.settings import SettingsRecord
from dail_harness.worklog import WorkLog, resume


def key(row):
    return (row["item"], row["index"])


def test_a_rerun_repairs_the_cut_line_reads_what_is_done_and_appends_the_rest(tmp_path):
    log = WorkLog(tmp_path / "sub" / "rows.jsonl", key)
    record = SettingsRecord(tmp_path / "settings.json", tmp_path, "job")
    assert not resume(record, {"seed": 1}, [log]) and log.done() == set()  # a new job: nothing to repair
    record.write({"seed": 1})
    log.append([{"item": "a", "index": 0}, {"item": "a", "index": 1}])
    with open(log.path, "a") as f:
        f.write('{"item": "b", "ind')  # a kill in the middle of an append
    assert log.done() == {("a", 0), ("a", 1)}  # the cut line is not work done
    with pytest.raises(HarnessError, match="seed: 1 -> 2"):
        resume(record, {"seed": 2}, [log])  # another job's settings: refused, the file left as it was
    assert log.path.read_text().endswith('"ind')
    assert resume(record, {"seed": 1}, [log])
    log.append([{"item": "b", "index": 0}])
    assert [json.loads(line) for line in log.path.read_text().splitlines()] == [
        {"item": "a", "index": 0},
        {"item": "a", "index": 1},
        {"item": "b", "index": 0},
    ]
    assert log.done() == {("a", 0), ("a", 1), ("b", 0)}


def test_growable_settings_may_change(tmp_path):
    log = WorkLog(tmp_path / "rows.jsonl", key)
    record = SettingsRecord(tmp_path / "settings.json", tmp_path, "job")
    record.write({"seed": 1, "n": 4})
    assert resume(record, {"seed": 1, "n": 8}, [log], may_change=("n",))
    with pytest.raises(HarnessError, match="n: 4 -> 8"):
        resume(record, {"seed": 1, "n": 8}, [log])


def test_the_shards_of_a_job_cover_its_items_once():
    from dail_harness.worklog import share

    items = list(range(10))
    parts = [share(items, (i, 3)) for i in range(3)]
    assert sorted(x for p in parts for x in p) == items and parts[1] == [1, 4, 7]
    assert share(items, None) == items
