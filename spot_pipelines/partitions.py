"""Partition definitions shared by assets, sensors and schedules."""

import dagster as dg

# Dynamic partition names are global across code locations, hence the project prefix.
AWS_ACCOUNTS_PARTITION = "spot_pipelines_aws_accounts"
aws_accounts_partitions = dg.DynamicPartitionsDefinition(name=AWS_ACCOUNTS_PARTITION)
