"""Training: the jit-compiled data-parallel step and loop (`trainer`), its state and optimizer
(`train_state`), the run's data (`inputs`), checkpoints that resume exactly (`checkpointing`),
metric writers, clean stops (`stopping`) and the final table (`final_eval`)."""
