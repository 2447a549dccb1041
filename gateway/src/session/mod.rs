//! Pure per-shard session core (filled in by the session work).
