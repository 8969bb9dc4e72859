"""The run config: every key, its default and what it means (one line each).

``default_config()`` is the ml_collections ConfigDict that ``tkd_jax.train_and_evaluate``
takes; a recipe (``tkd_jax.recipes``) sets a few fields on top of it, a variant (e.g. the
paper's setting in ``experiments/configs/paper.py``) a few more, and the command line any key:
``--config.key=value`` (nested: ``--config.distill.alpha=0.7``; lists comma-separated:
``--config.init_from_teacher_layers=0,2,4``). ``tkd_jax.config.RunConfig.from_config_dict``
checks it once, before any work, and everything below receives typed values.
"""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # --- what runs -----------------------------------------------------------------------------
    c.task = ""  # GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli
    c.recipe = ""  # teacher | transformer | tkd | kd | rnn | lstm | cnn | mlm (tkd_jax.recipes)
    c.data_dir = ""  # classic GLUE directory ("" = $GLUE_DIR, then the hub)
    c.teacher = ""  # pretrained HF BERT dir ("" = $TKD_TEACHER, the installed package, the hub)
    # --- model -------------------------------------------------------------------------------
    c.model = "student_small"  # Transformer preset or baseline (rnn, lstm, bilstm, cnn)
    c.dropout_rate = -1.0  # < 0: the preset's own dropout; else override hidden dropout
    c.attention_dropout_rate = -1.0  # < 0: the preset's own; else override (Transformers only)
    c.init_from = ""  # workdir of an earlier run (e.g. mlm) to start the encoder from
    c.init_from_teacher_layers = ()  # e.g. (0, 2, 4): copy teacher layers + embeddings
    c.init_teacher_source = "pretrained"  # pretrained (--teacher) | run (first --teacher_run)
    c.init_teacher_head = False  # also copy the run's pooler + classifier (source=run only)

    # --- data --------------------------------------------------------------------------------
    c.data_source = "auto"  # auto (data_dir, GLUE_DIR, then the hub) | local | hub | tfds
    c.max_len = 128  # tokens per example after [CLS]/[SEP] (longest-first truncation of pairs)
    c.bucket_ratio = 0.0  # batch lengths grow by this ratio (> 1); 0: balance compiles vs padding
    c.tokenizer = "teacher"  # teacher: the teacher's WordPiece | trained: on train text
    c.vocab_size = 8000  # size of the trained WordPiece vocabulary (tokenizer=trained only)
    c.max_train_examples = 0  # > 0: use only the first N training examples (smoke runs)
    c.max_eval_examples = 0  # > 0: evaluate on only the first N examples of each dev split
    c.holdout_examples = 0  # > 0: hold out N training examples and evaluate on them, not dev
    c.preprocess = ml_collections.ConfigDict()
    c.preprocess.dedup = False  # drop duplicate training examples (never dev)
    c.preprocess.drop_missing = True  # drop rows whose text is empty (counted in the report)
    c.preprocess.lowercase = False  # lower-case text (the uncased WordPiece already does)
    c.preprocess.strip_punctuation = False  # remove punctuation characters
    c.preprocess.expand_contractions = False  # expand contractions/abbreviations (documented table)
    c.preprocess.augment = ()  # any of replace, delete, swap, e.g. ("replace", "swap")
    c.preprocess.augment_prob = 0.1  # per-word deletion probability (augment=delete)
    c.preprocess.augment_swaps = 1  # word pairs swapped per text (augment=swap)
    c.preprocess.augment_copies = 1  # augmented copies added per training example
    c.preprocess.augment_replace_prob = 0.3  # per-word replacement probability (augment=replace)
    c.preprocess.augment_neighbors = 10  # teacher word-embedding neighbours per word (replace)

    # --- optimisation --------------------------------------------------------------------------
    c.batch_size = 32  # global training batch size (divisible by the device count)
    c.eval_batch_size = 128  # global eval batch size
    c.num_epochs = 3  # passes over the training set
    c.num_train_steps = -1  # > 0: stop after this many steps (overrides num_epochs)
    c.learning_rate = 1e-4  # peak learning rate of AdamW
    c.schedule = "linear"  # linear | cosine | constant decay after warmup
    c.warmup_ratio = 0.1  # fraction of optimizer updates spent on linear warmup
    c.weight_decay = 0.01  # AdamW decoupled weight decay (not on biases / LayerNorm)
    c.adam_b1 = 0.9  # AdamW beta1
    c.adam_b2 = 0.999  # AdamW beta2
    c.adam_eps = 1e-8  # AdamW epsilon
    c.grad_clip_norm = 1.0  # global-norm gradient clipping (0 disables)
    c.grad_accum_steps = 1  # micro-batches per update (optax.MultiSteps)

    # --- efficiency ----------------------------------------------------------------------------
    c.precision = "fp32"  # fp32 | bf16 | fp16 (compute dtype; params and optimizer state stay fp32)
    c.loss_scale = 32768.0  # fp16 initial dynamic loss scale
    c.loss_scale_growth_interval = 2000  # fp16: finite steps before the scale doubles
    c.parallel = "jit"  # jit (device mesh + NamedSharding) | pmap
    c.num_devices = 0  # 0: all devices
    c.param_layout = "replicated"  # replicated (pure data parallel) | tensor | fsdp (sharding.py)
    c.model_parallelism = 1  # devices per model group (tensor / fsdp layouts)

    # --- compression during training (tkd_jax/compress) -----------------------------------------
    c.qat = "none"  # none | int8: quantization-aware training of the Dense layers (qwix)
    c.prune = ml_collections.ConfigDict()
    c.prune.sparsity = 0.0  # > 0: magnitude-prune Dense kernels to this sparsity while training
    c.prune.scope = "global"  # global (one threshold) | layer (each kernel) | output (each neuron)
    c.prune.begin_ratio = 0.0  # fraction of updates before pruning starts (cubic schedule)
    c.prune.end_ratio = 0.5  # fraction of updates at which the final sparsity is reached
    c.prune.frequency = 100  # updates between mask recomputations

    # --- distillation (recipes tkd, kd) --------------------------------------------------------
    c.distill = ml_collections.ConfigDict()
    c.distill.enabled = False  # add the teacher term (set by the tkd/kd recipes)
    c.distill.alpha = 0.5  # total = (1 - alpha) CE(hard) + alpha KD  (paper: 0.5)
    c.distill.temperature = 1.0  # softmax temperature T of eq 9 (paper: 1)
    c.distill.kind = "ce"  # ce (eq 9) | kl
    c.distill.t2_scaling = False  # multiply the soft term by T^2 (Hinton)
    c.distill.soft_labels = "cached"  # cached: teacher logits computed once | online: in the step
    c.distill.teacher_runs = ()  # workdirs of finished `teacher` runs (--teacher_run)
    c.distill.teacher_weights = ()  # one weight per teacher run (() = equal)
    c.distill.feature_weight = 0.0  # weight of hidden-state MSE (online only)
    c.distill.feature_kind = "mse"  # mse | cosine
    c.distill.feature_layers = ()  # ("s:t", ...) hidden-state index pairs (() = uniform)
    c.distill.attention_weight = 0.0  # weight of attention-map distillation (online only)
    c.distill.attention_kind = "mse"  # mse | kl
    c.distill.attention_layers = ()  # ("s:t", ...) layer pairs (() = uniform mapping)

    # --- masked-LM pre-training (recipe mlm) ---------------------------------------------------
    c.mlm = ml_collections.ConfigDict()
    c.mlm.text_file = ""  # one passage per line; "" = the task's training sentences
    c.mlm.mask_prob = 0.15  # fraction of real tokens chosen for prediction
    c.mlm.first_regular_id = 999  # random replacements from ids >= this (skips BERT [unused])

    # --- loop, checkpoints, logging -------------------------------------------------------------
    c.eval_every_steps = 0  # 0: evaluate at the end of each epoch
    c.checkpoint_every_steps = 0  # 0: checkpoint at every eval
    c.keep_checkpoints = 2  # last k checkpoints kept (plus the best by the dev metric)
    c.log_every_steps = 50  # metrics.jsonl / TensorBoard train scalars
    c.progress_bar = True  # tqdm bar on a terminal; plain lines every ~30 s in a log
    c.quiet = False  # print only errors (scripts); --quiet on the command line
    c.compile_cache_dir = "~/.cache/tkd_jax/xla"  # persistent XLA compilation cache ("" = off)
    c.async_checkpoints = True  # orbax async saves
    c.seed = 0  # set by --seed: parameter init, dropout and data order
    return c
