"""Reference tests import torch unconditionally: a missing reference must fail, not skip."""

import torch

torch.set_num_threads(2)
