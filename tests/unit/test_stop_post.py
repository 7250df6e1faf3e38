"""The lab's ExecStopPost listener speaks supervisord's event protocol and runs the commands."""

from __future__ import annotations

import io
from pathlib import Path

from pgha.lab.stop_post import serve


def event(name: str, process: str) -> str:
    payload = f"processname:{process} groupname:{process} from_state:RUNNING pid:42"
    return f"ver:3.0 server:supervisor serial:1 pool:x poolserial:1 eventname:{name} len:{len(payload)}\n{payload}"


def test_runs_the_commands_of_an_ended_program_only(tmp_path: Path) -> None:
    marker = tmp_path / "released"
    table = {"haproxy-01--keepalived": [["touch", str(marker)]]}
    out, log = io.StringIO(), io.StringIO()
    serve(table, io.StringIO(event("PROCESS_STATE_RUNNING", "haproxy-01--keepalived")
                             + event("PROCESS_STATE_EXITED", "haproxy-01--haproxy")), out, log)
    assert not marker.exists()
    serve(table, io.StringIO(event("PROCESS_STATE_EXITED", "haproxy-01--keepalived")), out, log)
    assert marker.exists()
    assert out.getvalue().count("READY\n") == 5 and out.getvalue().count("RESULT 2\nOK") == 3
    assert "touch" in log.getvalue()
