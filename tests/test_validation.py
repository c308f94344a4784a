import pytest

from spot_pipelines.core import validation
from spot_pipelines.core.accounts import build_request
from spot_pipelines.core.errors import ValidationError


def role(**overrides):
    args = dict(
        name="prod",
        aws_account_id="111122223333",
        role_arn="arn:aws:iam::111122223333:role/SpotPipelines",
        external_id="ext-123",
        access_key_id=None,
        regions=None,
    )
    return build_request(**{**args, **overrides})


def test_valid_role_and_key_requests():
    assert role().auth_method == "role"
    keys = build_request(
        "dev",
        "123456789012",
        role_arn=None,
        external_id=None,
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        regions=["eu-west-1", " us-east-1", "eu-west-1"],
    )
    assert keys.auth_method == "keys" and keys.regions == ["eu-west-1", "us-east-1"]


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"role_arn": "arn:aws:iam::111122223333:user/bob"}, "role_arn"),
        ({"role_arn": "not-an-arn"}, "role_arn"),
        ({"role_arn": "arn:aws:iam::999999999999:role/X"}, "role_arn"),
        ({"aws_account_id": "1234"}, "aws_account_id"),
        ({"name": "Prod Account"}, "name"),
        ({"regions": ["eu-west-1", "mars-1"]}, "regions"),
        ({"access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "auth"),
        ({"role_arn": None}, "auth"),
    ],
)
def test_bad_input_names_the_field(overrides, field):
    with pytest.raises(ValidationError) as err:
        role(**overrides)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_role_arn_of_another_account_says_which():
    with pytest.raises(ValidationError, match="belongs to account 999999999999, not 111122223333"):
        role(role_arn="arn:aws:iam::999999999999:role/X")


@pytest.mark.parametrize("region", ["eu-west-1", "cn-north-1", "us-gov-west-1", "ap-southeast-7"])
def test_regions_of_every_partition_are_accepted(region):
    assert role(regions=[region]).regions == [region]


@pytest.mark.parametrize(
    "region, hint", [("us-east-9", "did you mean us-east-2, us-east-1"), ("xx-fake-9", "e.g. eu-west-1")]
)
def test_a_region_botocore_does_not_know_is_refused(region, hint):
    with pytest.raises(ValidationError) as err:
        role(regions=["eu-west-1", region])
    assert str(err.value).startswith(f"regions: '{region}' is not an AWS region ({hint}")


def test_run_config_regions_name_their_own_field():
    assert validation.regions(["us-east-1"], field="config.regions") == ["us-east-1"]
    with pytest.raises(ValidationError, match=r"^config\.regions: 'us-east-9'"):
        validation.regions(["us-east-9"], field="config.regions")


def test_shown_cuts_long_values_and_says_how_long_they_were():
    assert validation.shown("dev") == "'dev'"
    assert validation.shown("a" * 10_000) == f"'{'a' * 40}…' (10000 characters)"


BLOB = "A" * 10_000


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": BLOB},
        {"aws_account_id": BLOB},
        {"role_arn": BLOB},
        {"external_id": BLOB},
        {"regions": [BLOB]},
        {"role_arn": None, "external_id": None, "access_key_id": BLOB},
    ],
)
def test_every_message_echoes_a_huge_value_in_under_80_characters_of_it(overrides):
    with pytest.raises(ValidationError) as err:
        role(**overrides)
    message = str(err.value)
    assert len(message) < 200 and "\n" not in message, message
    assert "A" * 41 not in message
