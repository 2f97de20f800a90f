"""Integrations with outside engines, each behind one module so nothing else imports them:

* :mod:`nas.integrations.ray_tune` -- trials dispatched as Ray Tune trials (the only ``ray`` import);
* :mod:`nas.integrations.optuna_study` -- Optuna studies and samplers (the only ``optuna`` import).
"""
