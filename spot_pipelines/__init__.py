"""spot_pipelines: a Dagster code location for AWS spot-instance cost optimization."""

from spot_pipelines.system_log import protect_wire_loggers

# Before any boto3 client exists: botocore's DEBUG logging would otherwise write temporary
# credentials (AssumeRole responses, X-Amz-Security-Token headers) to whatever handler listens.
protect_wire_loggers()
