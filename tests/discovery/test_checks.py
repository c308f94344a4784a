"""discovered_instances' checks: duplicates per account and missing AZ IDs are caught; a clean scan passes."""

from spot_pipelines.core.discovery import duplicate_instance_ids, instance_row, missing_az_ids

RAW = {"InstanceId": "i-1", "InstanceType": "m5.large", "Placement": {"AvailabilityZone": "us-east-1a"}}


def test_a_clean_scan_passes_and_a_duplicate_or_missing_az_id_fails():
    rows = [
        instance_row(RAW, "us-east-1", {"us-east-1a": "use1-az1"}),
        instance_row({**RAW, "InstanceId": "i-2"}, "us-east-1", {"us-east-1a": "use1-az1"}),
    ]
    assert duplicate_instance_ids(rows) == [] and missing_az_ids(rows) == []
    # The same instance reported by two regions' pages, and one without placement at all.
    unplaced = instance_row({"InstanceId": "i-3", "InstanceType": "m5.large"}, "us-west-2", {})
    assert duplicate_instance_ids([*rows, dict(rows[0], region="us-west-2")]) == ["i-1"]
    assert missing_az_ids([*rows, unplaced]) == ["i-3"]
