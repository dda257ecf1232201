"""Bayesian optimisation from bomf-bo (Rust): ask/tell, hypervolume, Pareto fronts.

Every number comes from the Rust crate ``bomf-bo``; this package only converts arrays::

    import bomf_bo

    space = bomf_bo.Space([bomf_bo.Param("lr", 1e-5, 1e-2, log=True),
                           bomf_bo.Param("batch", 8, 64, integer=True)])
    opt = bomf_bo.Optimizer(space, {"acc": "max", "loss": "min"}, seed=0)
    x = opt.ask()                 # (1, 2) array; pending until told
    opt.tell(x, [[0.91, 0.30]])   # NaN marks a failed run
    state = opt.state()           # JSON; bomf_bo.Optimizer.from_state(state) resumes exactly

``bomf_bo.optuna`` holds the Optuna samplers (``QNEHVISampler``, ``QLogEISampler``).
Errors raised by bomf-bo are :class:`BoError` (a ``ValueError``) with bomf-bo's message.
"""

from bomf_bo._native import (
    MAX_ASK,
    BoError,
    Optimizer,
    Param,
    Space,
    __version__,
    hypervolume,
    non_dominated_indices,
    pareto_front,
)

__all__ = [
    "MAX_ASK",
    "BoError",
    "Optimizer",
    "Param",
    "Space",
    "__version__",
    "hypervolume",
    "non_dominated_indices",
    "pareto_front",
]
