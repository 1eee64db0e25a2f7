"""Model-free linear algebra: batched operators, Lanczos, CG and trace estimators.

Nothing here knows about models; the per-sample Jacobian products that feed these
algorithms live in :mod:`leakaudit.jacobians`.
"""
