"""Backup sets (a folder of dumps with a manifest), their store, verification, and the dump
tools that write and read them. This layer sits below schema diff, checks and rollback."""
