"""HostProcess.log(): a restarted process appends to its predecessor's log file, but reads
(and waits for its ready line in) only what it printed itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mininet_tests.processes import HostProcess


def test_log_starts_where_the_process_started(tmp_path: Path) -> None:
    path = tmp_path / "c1-hold.log"
    path.write_text("open 100 in 0.1\n")  # an earlier process of the same name
    with open(path, "ab") as log:
        offset = log.tell()
        popen = subprocess.Popen([sys.executable, "-c", "print('open 1000 in 2.0')"],
                                 stdout=log)
    popen.wait(timeout=30)
    proc = HostProcess("c1", "hold", popen, path, offset)
    assert proc.log() == "open 1000 in 2.0\n"
    assert path.read_text().count("open") == 2  # the file keeps both
