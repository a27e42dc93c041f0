"""Training-loop integrations: ``training.TrainingMonitor`` for any loop, a transformers
``TrainerCallback`` (``transformers``) and a PyTorch Lightning ``Callback`` (``lightning``).
Each module imports its framework, so import only the one you use."""
