"""Pre-training stage (paper section IV, step 1): masked-language modelling of a student on
unlabeled text — the task's training sentences, or a text file with one passage per line —
with BERT's 15% masking (80% [MASK], 10% random token, 10% unchanged).

    python -m experiments.glue --task sst2 --recipe mlm --workdir runs/sst2_mlm
    python -m experiments.glue --task sst2 --recipe tkd --config.init_from=runs/sst2_mlm ...
"""

import ml_collections

from experiments.configs import default


def override(c):
    c.model = "student_small"
    c.learning_rate = 5e-4
    c.num_epochs = 3
    c.mlm = ml_collections.ConfigDict()
    c.mlm.text_file = ""  # one passage per line; "" = the task's training sentences
    c.mlm.mask_prob = 0.15  # fraction of real tokens chosen for prediction
    c.mlm.first_regular_id = 999  # random replacements from ids >= this (skips BERT [unused])
    return c


def get_config():
    return override(default.get_config())
