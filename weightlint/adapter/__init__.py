"""PEFT adapters: their configuration, their LoRA pairs and the updates those apply (imports nothing)."""
