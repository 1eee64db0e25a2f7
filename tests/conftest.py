"""Test-wide settings.

The tests use tiny models whose operations are far too small to gain from intra-op
threads; on a shared 2-core machine the threads only contend. One thread keeps the
suite fast and its timings stable.
"""

import torch

torch.set_num_threads(1)
