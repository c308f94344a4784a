"""AWS errors as a run's Failure, for every AWS-calling asset: the other half of AWS_RETRY_POLICY."""

import dagster as dg

from spot_pipelines.core.aws_errors import describe, is_permanent


def aws_failure(what: str, exc: BaseException) -> dg.Failure:
    """`what: cause` as a Failure. What a retry cannot fix (credentials, permissions, bad input or
    data) bypasses the RetryPolicy and fails the run at once; throttling and network errors keep it."""
    return dg.Failure(description=f"{what}: {describe(exc)}", allow_retries=not is_permanent(exc))
