"""TuNAS (Bender et al., CVPR 2020) in PyTorch over xnas spaces: a weight-sharing supernet
(:mod:`nas.drivers.tunas.supernet`), an independent-categorical REINFORCE controller with the absolute
cost reward (:mod:`nas.drivers.tunas.controller`) and the search loop (:mod:`nas.drivers.tunas.search`).

Only :mod:`nas.drivers.tunas.config` (the search's configuration and defaults, which the CLI reads) is
torch-free; the controller, the supernet and the search import torch.
"""
