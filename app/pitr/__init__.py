"""Point-in-time recovery from a WAL archive (docs/SCALE.md): engines, the window, restoring
aside, and the restore source it gives."""
