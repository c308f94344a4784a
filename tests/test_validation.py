import pytest

from spot_pipelines.core.accounts import build_request
from spot_pipelines.core.errors import ValidationError


def role(**overrides):
    args = dict(name="prod", aws_account_id="111122223333", role_arn="arn:aws:iam::111122223333:role/SpotPipelines",
                external_id="ext-123", access_key_id=None, regions=None)
    return build_request(**{**args, **overrides})


def test_valid_role_and_key_requests():
    assert role().auth_method == "role"
    keys = build_request("dev", "123456789012", role_arn=None, external_id=None,
                         access_key_id="AKIAIOSFODNN7EXAMPLE", regions=["eu-west-1", " us-east-1", "eu-west-1"])
    assert keys.auth_method == "keys" and keys.regions == ["eu-west-1", "us-east-1"]


@pytest.mark.parametrize("overrides, field", [
    ({"role_arn": "arn:aws:iam::111122223333:user/bob"}, "role_arn"),
    ({"role_arn": "not-an-arn"}, "role_arn"),
    ({"role_arn": "arn:aws:iam::999999999999:role/X"}, "role_arn"),
    ({"aws_account_id": "1234"}, "aws_account_id"),
    ({"name": "Prod Account"}, "name"),
    ({"regions": ["eu-west-1", "mars-1"]}, "regions"),
    ({"access_key_id": "AKIAIOSFODNN7EXAMPLE"}, "auth"),
    ({"role_arn": None}, "auth"),
])
def test_bad_input_names_the_field(overrides, field):
    with pytest.raises(ValidationError) as err:
        role(**overrides)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_role_arn_of_another_account_says_which():
    with pytest.raises(ValidationError, match="belongs to account 999999999999, not 111122223333"):
        role(role_arn="arn:aws:iam::999999999999:role/X")
