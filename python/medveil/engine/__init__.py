"""The de-identification engine: one decision layer, a Dataset and a raw-byte encoder."""
