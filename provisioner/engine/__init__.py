"""The run engine: the imperative shell around the pure core, shared by the CLI and the daemon.

One run, in order, is :mod:`provisioner.engine.run`: read sources -> health gate ->
desired state -> inspect targets -> diff and plan -> SoD enforcement -> safety ->
execute -> verify -> record.  Planning returns values (the plan, its audit records,
its safety verdict); side effects come at the end.  The stages live beside it (context,
connections, execute, recovery, retention, health, segregation, safety, shortcircuit)
and the run's bookkeeping in :mod:`provisioner.engine.record`.  The edges (``provisioner.cli``,
``provisioner.daemon``) sit above the engine and never import each other's code
for a run.
"""
