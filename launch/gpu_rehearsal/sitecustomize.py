"""The GPU check's CPU rehearsal: Python here lacks what the GPU check's machine lacks.

``launch/gpu_check.sh`` puts this folder first on ``PYTHONPATH`` when ``MVL_GPU_TESTS_DEVICE=cpu``, so every Python
process of the rehearsal (pytest, torchrun and its ranks, the benchmark, the report) imports this module at start-up.
Each package of ``ABSENT_ON_THE_GPU_MACHINE`` then fails to import as it does there (``ModuleNotFoundError``), and
``importlib.util.find_spec`` answers None for it, so optional-dependency checks (transformers', megatron-core's) see
it missing too. The list is the lent machine's image (``shared/notes/gpu-machine.md``) against what this project
and its tests import; megatron-core and transformers are not in it, since the check brings them as wheels.
"""

import sys

ABSENT_ON_THE_GPU_MACHINE = (
    "apex", "av", "boto3", "botocore", "braceexpand", "flash_attn", "gcsfs", "moto", "s3fs", "transformer_engine",
    "vllm", "webdataset",
)
"""Import names of the packages the GPU check's machine does not have (and the check does not bring)."""

if __name__ == "sitecustomize":
    for name in ABSENT_ON_THE_GPU_MACHINE:
        sys.modules[name] = None
