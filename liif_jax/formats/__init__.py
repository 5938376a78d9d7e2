"""Files that hold models: our orbax checkpoints (`checkpoints`), the official state dict
(`state_dict`) and PyTorch `.pth` files, read and written without PyTorch (`pth`)."""
