"""odevae: individual disease trajectories from small longitudinal cohorts.

A variational autoencoder maps each visit's measurements to a low-dimensional latent
state whose dynamics follow an ODE with patient-specific parameters, predicted from
baseline covariates (Hackenberg et al., Biometrical Journal 2022; arXiv 2311.16286).

The subpackages follow the workflow's stages; each rule in ``workflow/rules/*.smk``
runs a thin script in ``workflow/scripts/`` (mostly named after the rule) that
calls them:

=========== ============================== =========================================
stage       rules                          modules
=========== ============================== =========================================
data        simulate, simulate_registry,   ``data/``: ``simulate``,
            fetch_pbcseq, ingest_table,    ``simulate_registry``, ``ingest``,
            ingest_registry                ``registry`` (readers), ``validation``
                                           (reading tables, checking cells),
                                           ``transforms``, ``cleaning``, ``tables``
preprocess  preprocess                     ``data/``: ``preprocess``, ``cohort``,
                                           ``report``, ``batching`` (patients as
                                           padded tensors, read by train, predict
                                           and figures)
split       split                          ``data/folds`` (the folds and each fold's
                                           inner split, read by train, tune and
                                           predict)
train       train (with tuning: tune,      ``train/``: ``training`` (one fold),
                                           ``model_setup`` (the model it trains),
            then choose)                   ``data`` and ``similarity`` (batches),
                                           ``restarts``, ``callbacks``;
                                           ``evaluate/tuning`` (the choice); the model
                                           in ``model/``: ``core`` (networks and
                                           dynamics), ``module`` (the
                                           LightningModule), ``trained`` (a
                                           trained model without Lightning, for
                                           predict and figures), ``systems`` (the
                                           catalogue, torch-free),
                                           ``dynamics``, ``solving``, ``networks``,
                                           ``loss``, ``neighbours`` (similarity
                                           batches)
predict     predict, comparators           ``evaluate/``: ``predict``,
                                           ``prediction/`` (targets, the model's
                                           predictors, comparators, the mixed
                                           models' fits in ``mixed_reml``, scores)
evaluate    evaluate, recovery,            ``evaluate/``: ``recovery`` (simulated
            registry_recovery, sweep       truth), ``registry_recovery`` (a
                                           simulated registry's rates),
                                           ``prediction/scores``, ``sweep``
figures     plot_*, paper_*, paper         ``figures/``: ``plots``,
                                           ``paper_figures``, ``prediction``;
                                           ``paper`` (items and manifest)
=========== ============================== =========================================

Top level: ``config_schema`` (config defaults and derived settings, torch-free),
``config_checks`` (every cross-key config check, torch-free),
``errors`` (:class:`~odevae.errors.InputError`), ``runner`` (how a script runs),
``provenance`` and ``paper``. Subpackage ``__init__`` files import nothing heavy,
so light jobs start without torch. The predict, evaluate and figures stages read
no module of ``train/`` (``tests/test_layout.py``).

Following a config key from ``config/config.yaml`` (checked against
``workflow/schemas/config.schema.yaml``) to where it takes effect:

* ``train.batch_size``: rule ``train`` passes the training config
  (``workflow/rules/train.smk``) → ``workflow/scripts/train.py`` →
  :func:`odevae.train.training.train_fold` → ``auto`` resolved for the fold's
  training patients (:func:`odevae.train.scale.resolve_batches`, with
  ``train.batching``) → the batch size of :class:`odevae.train.data.CohortDataModule`
  (random or bucketed batches; similarity batches hold
  ``train.similarity.neighbours`` + 1 patients).
* ``model.system``: :func:`odevae.config_checks.check_model_config` checks it
  before any job starts (``workflow/rules/config.smk``); rule ``train`` →
  :func:`odevae.train.model_setup.build_model` (the ``model`` and ``loss`` sections)
  → :class:`odevae.model.module.ODEVAE` → :class:`odevae.model.core.ODEVAECore`
  → :func:`odevae.model.dynamics.make_system` (the names are
  :data:`odevae.model.systems.SYSTEM_NAMES`); the library's defaults of those
  sections are :mod:`odevae.model.settings`'.
"""

__version__ = "0.1.0"
