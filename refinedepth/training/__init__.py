"""One training infrastructure for both stages (the backbone and the refiner trainers keep only
their step and their model):

* :mod:`.checkpoint` — atomic checkpoint directories with hashes, umask permissions;
* :mod:`.rundir` — the run directory (``last/``, ``best/``, ``log.jsonl``) and its
  resume-or-refuse gate;
* :mod:`.resume` — comparing a checkpoint's options with a resumed run's (paths normalised);
* :mod:`.sharding` — each rank's share of an epoch's permutation;
* :mod:`.distributed` — device resolution, DDP set-up and tear-down;
* :mod:`.seeding` — derived generators and RNG state for checkpoints.

Importing the package imports no torch.
"""
