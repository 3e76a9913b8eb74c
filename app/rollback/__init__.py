"""The rollback engine: plans of steps for each rollback type, and the runner that executes
them with the journal, the target lock and the event channel."""
