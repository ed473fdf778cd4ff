"""Benchmarks on public image-text sets: `python -m koclip bench`.

`scoring` holds the metrics (CLIP_benchmark's rules), `data` the named data sets, `encoders` the models
it can score (koclip's own and peers through their own libraries), `cache` the embeddings kept on disk,
`run` the task loop, `report` the tables, and `adapter` the model interface CLIP_benchmark itself calls.
"""
