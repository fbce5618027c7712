"""Training plumbing shared by the gmllm and groupdpo jobs, one responsibility per module:

- `device`: this process's device and precision, torchrun's process group, seeding, collectives;
- `parallel`: DDP / FSDP2 wrapping, gradient synchronisation, freezing parameters the loss never
  reaches, the whole model back after FSDP training;
- `checkpoint`: checkpoints in the artifact store, trainable weights, RNG and optimizer state;
- `schedule`: what optimiser step N uses: its learning rate and its examples;
- `fit`: the AdamW loop (gradient accumulation, fp16 loss scaling, clipping, checkpoint calls);
- `progress`: step/total/loss/ETA reports through the job context.
"""
