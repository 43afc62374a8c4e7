"""The finished-work log every resumable job keeps (eval samples, D_syn traces, hints, STaR's rows)."""

import json

import pytest

from dail_harness.errors import HarnessError
from dail_harness.worklog import SettingsRecord, WorkLog, resume


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


def test_pending_deals_every_sample_to_one_shard_and_leaves_out_what_is_stored():
    from dail_harness.scale.plan import Shard
    from dail_harness.worklog import pending

    items, n = ["a", "b", "c"], 5
    stored = {("b", 1), ("c", 4)}
    parts = [pending(items, n, Shard(i, 2, 2, len(items)), lambda x, i: (x, i) in stored) for i in range(2)]
    drawn = sorted((w.item, i) for part in parts for w in part for i in w.indices)
    assert drawn == sorted({(x, i) for x in items for i in range(n)} - stored)
    # shard 0 of 2 in blocks of 2 over 3 items: block b of item p goes to (p + 3b) % 2
    assert [(w.position, w.item, w.indices) for w in parts[0]] == [
        (0, "a", [0, 1, 4]),
        (1, "b", [2, 3]),
        (2, "c", [0, 1]),
    ]
    whole = pending(items, 1, None, lambda x, _: x == "b")
    assert [(w.position, w.item, w.indices) for w in whole] == [(0, "a", [0]), (2, "c", [0])]


def test_a_job_records_its_settings_before_its_first_row_and_a_rerun_draws_only_the_rest(tmp_path):
    from dail_harness.worklog import Job

    def job(seed=1):
        record = SettingsRecord(tmp_path / "out.settings.json", tmp_path / "out", "job")
        return Job(record, {"seed": seed}, WorkLog(tmp_path / "out.jsonl", key))

    def groups(todo, die_after=None):
        for number, (item, index) in enumerate(todo):
            if number == die_after:
                raise KeyboardInterrupt  # killed while producing the next group
            yield [{"item": item, "index": index}]

    first = job()
    assert first.resume() == set() and not first.record.exists()
    seen, append = [], first.log.append

    def append_watched(rows):
        seen.append(first.record.exists())  # whether the record is there when a row is written
        append(rows)

    first.log.append = append_watched  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.run(groups([("a", 0), ("a", 1), ("b", 0)], die_after=2))
    assert seen == [True, True]
    with pytest.raises(HarnessError, match="seed: 1 -> 2"):
        job(seed=2).resume()
    again = job()
    done = again.resume()
    assert done == {("a", 0), ("a", 1)}
    assert again.run(groups([k for k in [("a", 0), ("a", 1), ("b", 0)] if k not in done])) == [
        {"item": "b", "index": 0}
    ]
    assert again.log.done() == {("a", 0), ("a", 1), ("b", 0)} and again.finish() is not None


def test_rows_without_a_settings_record_are_refused_not_taken_for_this_jobs(tmp_path):
    from dail_harness.worklog import Job

    log = WorkLog(tmp_path / "out.jsonl", key)
    log.append([{"item": "a", "index": 0}])  # e.g. a merge cut short between its rows and its record
    job = Job(SettingsRecord(tmp_path / "out.settings.json", tmp_path / "out", "job"), {"seed": 1}, log)
    with pytest.raises(HarnessError, match=r"holds rows but out\.settings\.json is missing"):
        job.resume()
    job.discard_unrecorded()  # what a launched job does: its shards hold every row
    assert job.resume() == set() and not log.path.exists()
