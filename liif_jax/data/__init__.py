"""The input pipeline: image decoding and checks (`imaging`), data sources (folders, TFDS,
named photographs, one's own photos), the official wrappers that cut training samples
(`wrappers`) and the grain pipeline that batches them (`pipeline`), looked up by name in `datasets`."""
