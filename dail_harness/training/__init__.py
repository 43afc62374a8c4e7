"""The training engine: LoRA on the student, references with the adapter off, chunked full-vocab losses."""
