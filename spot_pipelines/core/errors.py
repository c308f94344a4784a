"""Errors with messages fit for an operator: they name the field or account, never a secret."""


class SpotPipelinesError(Exception):
    """Base class: the message is safe to show in logs and the UI."""


class ConfigError(SpotPipelinesError):
    pass


class ValidationError(SpotPipelinesError):
    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"{field}: {problem}")


class CredentialError(SpotPipelinesError):
    pass
