"""Reading what users have: checkpoints (safe by default) and datasets."""

from leakaudit.io.checkpoints import CheckpointInfo, load_checkpoint, sha256_file

__all__ = ["CheckpointInfo", "load_checkpoint", "sha256_file"]
