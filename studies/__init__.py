"""The SimCSE paper's studies (ablation tables and Figure 2) as runnable experiments, at any scale.

    python -m studies list
    python -m studies run dropout --scale cpu [--seeds 3] [--out results/studies]
    python -m studies commands dropout --scale paper     # the train.py command lines, without running

Each study (:mod:`studies.catalog`) is a declarative list of ``train.py`` flags per paper row; every run goes
through ``train.main`` and, for test numbers, ``evaluation.py``'s own code (:mod:`studies.runner`).
"""
