"""Plans users can apply: quantization per matrix, low-rank factorization per matrix (imports nothing)."""
