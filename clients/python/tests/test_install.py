"""``pip install ./clients/python`` into a fresh virtual environment, with no package index,
then upstream's flows through the installed ``dsmq_bun.compat`` (not the checkout's)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

from server_process import REPOSITORY, ServerProcess

PACKAGE = os.path.join(REPOSITORY, "clients", "python")
#: Creating the environment and installing take a few seconds; a loaded machine, more.
INSTALL_TIMEOUT = 300

# Upstream's user code, with only the import line changed.
FLOW = textwrap.dedent(
    """
    import sys
    from dsmq_bun.compat import connect

    host, port = sys.argv[1], int(sys.argv[2])
    write_client = connect(host, port)
    read_client = connect(host, port)
    assert read_client.get("test") == ""
    write_client.put("test", "test_msg")
    assert read_client.get("test") == "test_msg"
    for i in range(5):
        write_client.put("test", f"test_msg {i}")
    assert read_client.get_latest("test") == "test_msg 4"
    write_client.put("test_A", "test_msg_A")
    assert read_client.get_wait("test_A") == "test_msg_A"
    import dsmq_bun
    print(dsmq_bun.__file__)
    write_client.shutdown_server()
    write_client.close()
    read_client.close()
    """
)


@unittest.skipIf(importlib.util.find_spec("ensurepip") is None, "this Python has no ensurepip (Debian: apt-get install python3-venv)")
class PipInstall(unittest.TestCase):
    def test_pip_install_then_upstreams_flow_runs_with_one_import_changed(self) -> None:
        directory = tempfile.mkdtemp(prefix="dsmq-py-venv-")
        self.addCleanup(shutil.rmtree, directory, True)
        environment = os.path.join(directory, "venv")
        subprocess.run([sys.executable, "-m", "venv", environment], check=True, capture_output=True, timeout=INSTALL_TIMEOUT)
        python = os.path.join(environment, "bin", "python")
        # --no-index: nothing may come from outside; the build backend is in the package itself.
        installed = subprocess.run(
            [python, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", PACKAGE],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        self.assertEqual(installed.returncode, 0, installed.stdout + installed.stderr)
        server = ServerProcess("--allow-shutdown")
        self.addCleanup(server.stop)
        clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        ran = subprocess.run(
            [python, "-c", FLOW, server.host, str(server.port)],
            cwd=directory,
            env=clean,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        self.assertEqual(ran.returncode, 0, ran.stdout + ran.stderr)
        self.assertIn(os.path.join(environment, "lib"), ran.stdout)
        self.assertEqual(server.wait_exit(), 0)


if __name__ == "__main__":
    unittest.main()
