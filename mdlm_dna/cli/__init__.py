"""The machinery of the ``python -m mdlm_dna.X`` commands: one-line user errors and start-up checks
(:mod:`~mdlm_dna.cli.entry`), and checks of the files a command reads and writes (:mod:`~mdlm_dna.cli.paths`).
The commands themselves are the top-level modules of ``mdlm_dna``."""
