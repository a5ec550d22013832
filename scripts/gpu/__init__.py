"""The GPU path prepared on a CPU machine and run on a lent GPU machine in one command.

A lent GPU machine has no network, Python 3.12 with torch, transformers and the rest of the
image listed in :mod:`scripts.gpu.image`, no ``datasets`` and no spaCy, and takes at most 64 MiB
of working tree and carried files per command. So, on the CPU machine:

* ``make gpu-wheels`` (:mod:`scripts.gpu.wheelhouse`): the wheels the image lacks into ``.whl/``,
  and all-MiniLM-L6-v2 in bf16 into ``.gpu/minilm-bf16/``;
* ``make gpu-data`` (:mod:`scripts.gpu.carry`): the corpora annotated here with spaCy, packed with
  the downstream set into ``.gpu/data.tar.xz``, and the size of everything a command sends.

On the GPU machine, ``scripts/gpu_check.sh`` (:mod:`scripts.gpu.check`) installs the wheels
beside the image's torch and runs the phases of :mod:`scripts.gpu.phases` and
:mod:`scripts.gpu.value` against one deadline, writing what each found as it goes
(:mod:`scripts.gpu.report`). ``GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 scripts/gpu_check.sh``
runs every step here at toy sizes, in a Python that has only the image's packages and the
wheelhouse's (no spaCy): the test suite's dry run.
"""
