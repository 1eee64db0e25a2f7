"""Per-sample Jacobians of the gradient map x ↦ ∇_θ ℓ(f_θ(x), y) (model-aware).

:mod:`~leakaudit.jacobians.protocol` states what the scores need from a chunk of samples;
:mod:`~leakaudit.jacobians.func` gives it with ``torch.func`` (vectorised) and
:mod:`~leakaudit.jacobians.autograd` with per-sample double backward (the fallback).
Everything model-free (Lanczos, CG, trace estimators, operators) lives in
:mod:`leakaudit.linalg`.
"""
