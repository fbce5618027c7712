"""The AudienceGrouping job's typed configuration: the AudienceGrouping spec (`osmf_core.api`).

Steps: `train` (fit the preference model, export it, cache encoder features), `cluster` (shard i
of N: its share of products), `merge` (combine shards, metrics, manifest). What it writes is
`osmf_core.layout.Grouping`.
"""
