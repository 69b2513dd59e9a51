"""`pipeline run`'s terminal: kfp.local's lines become one line per step; everything goes to the log."""

import io

from cli.progress import StepLog


def test_a_step_line_per_task_and_no_line_for_a_skipped_kfp_group():
    log, terminal = io.StringIO(), io.StringIO()
    stream = StepLog(log, terminal)
    # kfp.local's own lines (kfp/local/orchestrator/enhanced_dag_orchestrator.py, task_dispatcher.py).
    text = (
        "INFO root: Executing task 'train'\n"
        '{"executor": "json"}\n'
        "INFO root: Task 'train' finished with status SUCCESS\n"
        "INFO root: Skipping conditional task condition-3 (condition evaluated to False)\n"  # kfp's group, not a step
        "INFO root: Executing task 'evaluate'\n"
        "INFO root: Task 'evaluate' finished with status FAILURE\n"
        "INFO root: Skipping task register: upstream task(s) ['evaluate'] failed\n"
    )
    stream.write(text[:40])  # lines arrive in pieces
    stream.write(text[40:])
    lines = terminal.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["train", "success"], ["evaluate", "failure"], ["register", "skipped"]]
    assert lines[-1].endswith("skipped (an upstream step failed)")
    assert stream.failed == "evaluate" and log.getvalue() == text
