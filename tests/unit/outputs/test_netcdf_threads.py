"""NetCDF windows published from several threads at once (two streams' windows in the daemon's
process) must not crash it: netCDF4 is not thread-safe, even for different files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# Run in a child: without the lock this crashes the interpreter (SIGSEGV/SIGBUS), which
# must fail this test, not end the test session.
SCRIPT = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from tests.unit.outputs.test_netcdf import write_hour
    from pipeline.outputs.netcdf import read_netcdf_table

    root = Path(sys.argv[1])

    def stream(n: int) -> int:
        folder = root / f"s{n}"
        for rep in range(6):
            for hour in range(24):
                path = write_hour(folder, hour, count=200)
        table, _ = read_netcdf_table(path)
        return len(table.times)

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(stream, range(4)))
    print(counts)
    """
)


def test_windows_of_several_streams_publish_from_threads_at_once(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    # Every stream's daily file holds all 24 hours once, whatever the other threads did.
    assert done.stdout.strip() == str([24 * 200] * 4)
