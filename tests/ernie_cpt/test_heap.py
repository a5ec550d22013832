"""release_free_memory gives back, for real, the heap pages that glibc keeps after a step frees its memory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ernie_cpt.heap import _malloc_trim, release_free_memory

# A fresh process: 1,600 blocks of 64 KiB (below glibc's mmap threshold, so from the heap) made and freed
# but the last, which keeps the freed 100 MiB below the top of the heap, where free() alone never returns it.
CHILD = """
import json
from ernie_cpt.heap import release_free_memory

def anonymous_mib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

start = anonymous_mib()
blocks = [bytearray(65536) for _ in range(1600)]
last = blocks[-1]
del blocks
freed = anonymous_mib()
released = release_free_memory()
print(json.dumps({"start": start, "freed": freed, "after": anonymous_mib(), "released": released}))
"""


@pytest.mark.skipif(_malloc_trim() is None or not sys.platform.startswith("linux"),
                    reason="glibc's malloc_trim (Linux) only")
def test_the_free_pages_a_step_leaves_in_the_heap_are_given_back():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    mib = json.loads(done.stdout)
    assert mib["freed"] - mib["start"] > 80  # freed, yet still resident: what glibc keeps
    assert mib["released"] and mib["after"] - mib["start"] < 10


def test_it_can_be_called_anywhere_and_never_raises():
    assert release_free_memory() in (True, False)
    assert release_free_memory() in (True, False)
