"""Per-sample exposure scores (SPEC.md): gradient norm, LAVP, I²F."""
