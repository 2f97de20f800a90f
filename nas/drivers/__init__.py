"""Search drivers. A driver sees only a space, frozen architectures, a cost function and an
:class:`~nas.evaluator.Evaluator`; where trials run and how they are recorded is not its business.

* ``expand`` -- X3D progressive expansion and backward contraction (``xnas expand``);
* ``nas.drivers.tunas`` -- TuNAS weight-sharing supernet and REINFORCE controller (``xnas search``).
"""
