"""Compression of trained Transformers: params -> params, plus how to run and save them.

One concept per module: ``int8`` (per-channel symmetric int8), ``runtime`` (fp32 / bf16 /
int8 w8a8 forward passes), ``magnitude`` (unstructured pruning, the cubic schedule, masks in
the optax chain), ``activation_norms`` (input-activation norms of the Dense layers, Wanda's
scores), ``structured`` (head / FFN-neuron importance and physical removal),
``qat`` (quantization-aware training with qwix), ``storage`` (safetensors on disk),
``measure`` (latency, throughput), ``finetune`` (recovery fine-tuning), ``run_io`` (a
finished run as input), ``methods`` (the study's methods by name), ``study`` (compress a run
with every method, evaluate and time them: ``study.compress_run``), ``report`` (the study's
table, plots and output directory).
"""
