"""Bridges to federated-learning frameworks (optional extras; each imports its framework
lazily): :mod:`leakaudit.integrations.flower` (``pip install 'leakaudit[flower]'``)."""
