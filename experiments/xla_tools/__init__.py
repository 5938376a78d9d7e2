"""Reading XLA's compiled programs (HLO text, kernels, FLOPs, bytes) and roofline estimates, for experiments/."""
