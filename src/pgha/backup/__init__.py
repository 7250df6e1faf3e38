"""Backups and point-in-time recovery with pgBackRest: the repository on the backup node
(:mod:`pgha.backup.repo`), restores (:mod:`pgha.backup.restore`)."""
