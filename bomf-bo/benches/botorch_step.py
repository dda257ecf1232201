"""BoTorch's standard qNEHVI BO step, shared by the BoTorch sides of the benchmarks (anchor.py,
quality/botorch_quality.py) so that both measure the same configuration.

ModelListGP of one SingleTaskGP per objective (Standardize outcome transform) fitted with
fit_gpytorch_mll; qNEHVI (X_baseline = every observation, prune_baseline=True,
SobolQMCNormalSampler(128)); optimize_acqf (q=1, num_restarts=10, raw_samples=512,
batch_limit 5, maxiter 200).
"""

import torch
from botorch.acquisition.multi_objective import qNoisyExpectedHypervolumeImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from botorch.sampling.normal import SobolQMCNormalSampler
from gpytorch.mlls import SumMarginalLogLikelihood


def qnehvi_candidate(train_x, train_y, ref_point, bounds):
    """One qNEHVI BO step (fit + acquisition + optimisation); returns the candidate (1 x d).

    ref_point: a list, one value per objective; bounds: a 2 x d tensor.
    """
    models = [
        SingleTaskGP(train_x, train_y[:, j : j + 1], outcome_transform=Standardize(m=1))
        for j in range(train_y.shape[-1])
    ]
    model = ModelListGP(*models)
    fit_gpytorch_mll(SumMarginalLogLikelihood(model.likelihood, model))
    acqf = qNoisyExpectedHypervolumeImprovement(
        model=model,
        ref_point=ref_point,
        X_baseline=train_x,
        prune_baseline=True,
        sampler=SobolQMCNormalSampler(sample_shape=torch.Size([128])),
    )
    candidate, _ = optimize_acqf(
        acqf,
        bounds=bounds.to(train_x),
        q=1,
        num_restarts=10,
        raw_samples=512,
        options={"batch_limit": 5, "maxiter": 200},
        sequential=True,
    )
    return candidate
