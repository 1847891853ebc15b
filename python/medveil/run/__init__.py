"""Running over archives: inputs, the worker pool, records, Spark, the demo archive."""
