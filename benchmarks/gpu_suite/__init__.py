"""Every GPU figure of mdlm-dna from one command (issue 19): correctness first, then the measurements.

    bash benchmarks/gpu_suite.sh                          # the device machine: writes $OUT/gpu_suite.{md,json,log}
    bash benchmarks/gpu_suite.sh --dry-run --out DIR      # a CPU at tiny sizes, about a minute (what CI tests)
    bash benchmarks/gpu_suite.sh --only dit sampling      # some steps again, inside the same lease

Only about one task in ten is lent the H200, for 15 minutes of device time in all and at most 10 minutes a
command, on a bare machine with no network. So this script is the whole device session: it installs what
travels in ``device_wheels/`` (scripts/fill_device_wheels.py fills it), starts building mamba-ssm for this
GPU in the background, and runs each step in its own subprocess with its own time limit, so that a step
that fails or overruns (mamba-ssm not building, an out-of-memory, a hang) costs its own budget and nothing
else. The whole run is held to ``--budget-s`` (540 s): the steps run in this order with these caps, and the
6-minute-ish total leaves the last step, the pretraining run, whatever time is left up to 3 minutes:

    setup     install the carried wheels and the project; mamba-ssm builds in the background (sm_90 only)
    ceiling   bf16 matmul and device copy: the ceilings that MFU and bandwidth figures are read against
    scan      1. the Triton selective scan against a float64 reference at the sizes the models use
    losses    1. DiT-small and Caduceus-PS losses and gradients on the GPU against the CPU, same weights
    dit       2. DiT-small training steps at L = 1k and 8k (activation checkpointing), eager and compiled, bf16
    chain     2b. the order-6 chain under the network: the CPU default recipe's step (8 x 512) with and without
              it, and DiT-small at 1k with it: whether model.markov_order=auto should turn it on for GPUs
    mamba     1. mamba-ssm's kernel against the same reference, once its build is done
    caduceus  3. Caduceus-PS training steps (the paper's 1k and 131k sizes) on the Triton, mamba-ssm, torch scans
    sampling  4. ancestral vs cached sampling, T = 1k and 10k, L = 1024, batch 64
    loader    5. the loader's bases/s against the training tokens/s measured in steps 2 and 3
    pretrain  6. a ~3-minute `python -m mdlm_dna.pretrain` of DiT-small on E. coli in bf16, then evaluate

Every row of the table carries the date, GPU, torch / CUDA / Triton versions and the exact command; the JSON
holds every figure (and each step's raw rows). ``--dry-run`` runs the same steps on the CPU at tiny sizes
(Triton under TRITON_INTERPRET=1, no mamba-ssm, no installs, no torch.compile), so the script cannot rot
between the rare sessions that have the device; tests/test_gpu_suite.py runs it.

The package imports only the standard library (and ``benchmarks/common.py``, which does too) at the top: it
has to start before anything is installed. One module per step; ``framework`` runs commands and collects the
rows, ``report`` writes them, ``cli`` is the run as a whole.
"""
