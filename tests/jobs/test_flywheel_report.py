"""The rounds table: requests, kept and the drop reasons per synthesis task, and the fate of a
round's synthetic rows in the next round's curation, in the column of the round that made them."""

from jobs.flywheel_report import round_row, table_markdown


def _state(k: int, tasks: dict | None = None, fate: dict | None = None) -> dict:
    steps = {"curate": {"totals": {"input": 10, "kept": 8, "dropped": 2}, "synthetic": fate or {}}}
    if tasks is not None:
        steps["synth"] = {"tasks": tasks, "samples": 19}
    return {"round": k, "steps": steps}


def test_synthesis_rows_per_task_and_their_fate_next_round():
    tasks = {"man_nl2cmd": {"requests": 8, "kept": 5, "acceptance": 0.625,
                            "dropped": {"synth_unverified:unknown_option": 2, "synth_truncated": 1}},
             "explain_log": {"requests": 8, "kept": 8, "acceptance": 1.0, "dropped": {}}}
    fate = {"in": 13, "kept": 11, "dropped": {"gopher_quality:gopher_short_doc": 2}}
    one, two = round_row(_state(1, tasks), _state(2, {}, fate)), round_row(_state(2, {}, fate))
    assert one["synth_requests"] == 16 and one["synth_generated"] == 13 and one["synth_acceptance"] == 0.8125
    assert one["synth_task_man_nl2cmd"] == "5/8: synth_unverified:unknown_option 2, synth_truncated 1"
    assert one["synth_task_explain_log"] == "8/8" and one["synth_samples"] == 19
    assert one["synth_kept_later"] == "11/13" and two["synth_kept_later"] is None
    assert two["synthetic_in"] == 13 and two["synthetic_kept"] == 11  # round 2's curation, in round 2's column
    table = table_markdown([one, two])
    assert "| man_nl2cmd | 5/8: synth_unverified:unknown_option 2, synth_truncated 1 | - |" in table
    assert "| synth kept by the next round's filters | 11/13 | - |" in table
    assert table.index("| acceptance |") < table.index("| explain_log |") < table.index("| man_nl2cmd |")
