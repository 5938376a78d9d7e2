"""Files: our orbax checkpoints (`checkpoints`), the official state dict (`state_dict`), PyTorch
`.pth` files read and written without PyTorch (`pth`), and any output written whole (`atomic`)."""
