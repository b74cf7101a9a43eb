#!/bin/bash
# Pretrain on several GPU nodes with SLURM: one task per GPU, Lightning reads the SLURM environment.
#   sbatch scripts/slurm_pretrain.sh                        # 2 nodes x 8 GPUs, hg38, DiT-small
#   sbatch --nodes=4 scripts/slurm_pretrain.sh trainer.num_nodes=4 model=caduceus_ps_paper
# Keep --nodes / --ntasks-per-node equal to trainer.num_nodes / trainer.devices (Lightning checks it).
#SBATCH --job-name=mdlm-dna
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --time=48:00:00
#SBATCH --signal=SIGUSR1@120
#SBATCH --output=slurm-%j.out
set -euo pipefail

RUN_DIR=${RUN_DIR:-runs/hg38_dit_small}
# Run the same sbatch again (or let SLURM requeue) to resume: resume=auto continues RUN_DIR/checkpoints/last.ckpt.
srun python -m mdlm_dna.pretrain \
  genome=hg38 genome.root="${HG38_ROOT:-/data/hg38}" \
  model=dit_small trainer=ddp trainer.devices=8 trainer.num_nodes="${SLURM_NNODES}" \
  data.seq_len=1024 data.batch_size=32 data.global_batch_size=512 data.num_workers=8 \
  hydra.run.dir="${RUN_DIR}" "$@"
