"""A party service stops cleanly however its stop signals arrive.

systemd sends SIGTERM and an impatient operator adds Ctrl-C; a supervisor may repeat
SIGTERM. A handler that takes a lock deadlocks when a second signal lands inside the first
(CI caught exactly that once), so the burst below is as dense as a loop can send it.
"""

from __future__ import annotations

import os
import signal
import time

from service_harness import Cluster


def test_a_burst_of_stop_signals_stops_the_service_once_and_cleanly(tmp_path):
    cluster = Cluster(tmp_path, certs_by_cli=False)
    cluster.start("bank_a")
    proc = cluster.procs["bank_a"]
    deadline = time.monotonic() + 3.0
    sent = 0
    try:  # a storm for the whole first part of the shutdown, not one signal per stop
        while proc.poll() is None and time.monotonic() < deadline:
            os.kill(proc.pid, signal.SIGINT if sent % 3 == 2 else signal.SIGTERM)
            sent += 1
    except ProcessLookupError:
        pass  # it exited between poll and kill
    assert cluster.stop("bank_a") == 0
    log = cluster.log("bank_a")
    assert log.count("shutting down") == 1, log
    assert "stopped in" in log, log
