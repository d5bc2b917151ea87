"""The open-files limit is raised to what the server's connections need."""

import subprocess
import sys

import pytest

resource = pytest.importorskip("resource", reason="open-file limits are POSIX")

CHILD = """
import resource
from fastserve.open_files import raise_open_files_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
print(raise_open_files_limit(4096))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == (hard if hard != resource.RLIM_INFINITY else 4096))
"""


def test_the_soft_limit_is_raised_to_the_hard_one():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    message, raised = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                                     check=True).stdout.splitlines()
    assert raised == "True"
    assert message.startswith("open files: limit raised from 256 to ")


def test_a_hard_limit_under_what_the_connections_need_is_said():
    child = CHILD.replace("(256, hard)", "(256, 512)")
    child = child.replace("(hard if hard != resource.RLIM_INFINITY else 4096)", "512")
    message, raised = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                                     check=True).stdout.splitlines()
    assert raised == "True"
    assert "under the 4096 that --max-connections asks for" in message
