"""The commented configuration template ``leakaudit init`` writes: every key with its
default, except the gate, which ships :data:`TEMPLATE_RULES` (docs/configuration.md is
the reference)."""

from __future__ import annotations

from leakaudit.config.schema import DEFAULT_RISK_SCORE, GateRule

#: The gate rules the template ships (``gate.rules`` defaults to none).
TEMPLATE_RULES = [GateRule("grad_norm", percentile=95, risky_when="above", max_fraction=0.1)]

TEMPLATE = f"""\
# leakaudit scan configuration. Every key is optional unless marked; the values shown
# are the defaults. Relative paths are relative to this file. Reference:
# docs/configuration.md. Run:  leakaudit scan --config THIS_FILE

model:
  # lenet | convnet | resnet18 | resnet20 | torchvision:<name> | path/file.py:function
  # | package.module:function | torchscript (the architecture comes from the checkpoint)
  name: lenet
  num_classes: null        # default: the checkpoint's classes, else the dataset's
  in_channels: null        # default: the dataset's channels
  image_size: null         # default: the dataset's image side
  kwargs: {{}}               # extra keyword arguments for the builder or your factory
  checkpoint: null         # .pt/.pth state_dict (nested and module.-prefixed ok),
                           # .safetensors, or a TorchScript archive
  trust_checkpoint: false  # true allows unpickling arbitrary objects: only for files you trust
  random_init: false       # true: no checkpoint, a random model seeded by scores.seed
  strict: true             # require the checkpoint's keys to match the model's exactly

data:
  # imagefolder | cifar10 | cifar100 | mnist | fashionmnist | tensors | digits
  kind: imagefolder
  root: data/              # folder, torchvision root (no downloads), or .pt / .npz file
  split: null              # train | test for torchvision roots and digits
  resize: null             # resize images to this side
  mean: null               # per-channel normalisation, e.g. [0.4914, 0.4822, 0.4465]
  std: null
  channels: null           # force 1 (grayscale) or 3 (RGB)
  indices: null            # scan only these positions, e.g. [0, 5, 9]
  first: null              # scan only the first N samples
  per_class: null          # at most N samples per class

scores:
  select: auto             # auto: only what the ranking, gate and calibration read; all;
                           # or a list, e.g. [grad_norm, lavp_l2_max, i2f] (docs/scores.md)
  risk_score: {DEFAULT_RISK_SCORE}       # the score that ranks samples
  directions: {{}}           # e.g. {{lavp_gm: higher_is_riskier}} flips the shipped one
  gm_end: max              # spectrum end used by lavp_gm: max | min
  n_probes: 8              # random probes of the I²F trace estimators
  max_iter: 80             # Lanczos steps per operator
  tol: 1.0e-4              # relative residual for convergence
  dense_max_dim: 256       # inputs of at most this many values: exact dense scores (0: off)
  damping: 1.0e-3          # I²F damping: ε = damping·λ_max(JᵀJ), or ε = damping if absolute
  damping_mode: relative   # relative | absolute (the I²F paper's fixed ε)
  seed: 0
  device: auto             # auto | cpu | cuda
  dtype: float32           # float32 | float64
  chunk_size: null         # samples scored together (default: from memory_budget)
  memory_budget: 2GiB
  backend: auto            # auto | func | autograd
  model_mode: eval         # eval | train
  local_steps: 1           # E: score the FedAvg update of E local SGD steps (docs/federated.md)
  local_lr: 0.1            # η of those steps
  batch_size: null         # B: score batches of B samples, as the client's loader forms them
  batch_shuffle: true      # the loader shuffles (generator seeded by seed)
  drop_last: false         # the loader drops a last batch smaller than B

defense:
  kind: gaussian           # none | gaussian | laplace | pruning | dp
  params: {{sigma: 0.01}}    # gaussian: sigma; laplace: scale; pruning: ratio; dp: clip, sigma
  target_error: 1.0        # τ: the reconstruction error (input units) of the σ what-if

gate:
  # Not the default (no rules: "gate: not configured"); a rule set that gates as pasted.
  rules:                   # all must pass
    - score: grad_norm     # risky: grad_norm above the 95th percentile of the baseline
      percentile: 95       # report's grad_norm (gate.baseline), else of this scan's own
      risky_when: above    # (then it fails only on unmeasured scores): no raw threshold
      max_fraction: 0.1    # that drifts with retraining. Fail if more than this fraction
                           # is risky (0: any); a score that is NaN always fails
    # - score: psnr        # with scores.calibration (leakaudit calibrate): risky when a
    #   threshold: 20      # sample is predicted to be reconstructed above 20 dB
    #   max_fraction: 0.0
    # - score: i2f         # a raw threshold: risky when i2f < 0.5 (the attack is
    #   threshold: 0.5     # predicted to get within 0.5); risky_when: below | above,
    #   risky_when: below  # default: the score's risk direction
  allowlist: []            # samples the gate ignores, each with a reason, e.g.
  # - id: "images/cat/003.png"           # the sample's id, and/or
  #   sha256: "<content_sha256 from a report>"  # its content hash (survives renames)
  #   reason: public image, consent on file
  #   expires: 2026-12-31  # optional: after this date the entry stops suppressing
  baseline: null           # a previous scan's JSON report: the gate then fails only on
                           # samples newly offending a rule (known ones are reported)

output:
  top_k: 10                # rows of the riskiest-samples table
  json: null               # write the JSON report here ("-": stdout)
  format: table            # table | md | json | sarif | junit | html, to stdout or `output`
  output: null
  redact: false            # hash sample ids, keep only file names of paths (--redact)
"""
