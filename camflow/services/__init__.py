"""The processes around the job: samplers, the analyst-store sink and store, the console, status, analysts' tools."""
