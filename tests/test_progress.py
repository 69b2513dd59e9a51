"""`pipeline run`'s terminal: kfp.local's lines become one line per step; everything goes to the log."""

import io

from cli.progress import StepLog


def test_a_step_line_per_task_and_no_line_for_a_skipped_kfp_group():
    log, terminal = io.StringIO(), io.StringIO()
    stream = StepLog(log, terminal)
    text = (
        "Executing task 'train'\n"
        '{"executor": "json"}\n'
        "Task 'train' finished with status SUCCESS\n"
        "Skipping conditional task 'condition-3'\n"  # the If around a package step: kfp's name, not a step
        "Skipping task 'condition-branches-5'\n"
        "Skipping task 'package'\n"
        "Executing task 'evaluate'\n"
        "Task 'evaluate' finished with status FAILURE\n"
    )
    stream.write(text[:40])  # lines arrive in pieces
    stream.write(text[40:])
    lines = terminal.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["train", "success"], ["package", "skipped"], ["evaluate", "failure"]]
    assert stream.failed == "evaluate" and log.getvalue() == text
