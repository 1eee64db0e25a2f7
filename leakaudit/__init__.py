"""leakaudit: which of a federated-learning client's samples can a server reconstruct
from the gradients it shares?"""

__version__ = "0.1.0"
