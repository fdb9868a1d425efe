import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApiKeyInfo(_message.Message):
    __slots__ = ("key_id", "tenant", "role", "name", "created_at", "revoked_at", "source", "rotated_from", "limits", "allowed_models", "denied_models", "expires_at")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROTATED_FROM_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DENIED_MODELS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    tenant: str
    role: str
    name: str
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    source: str
    rotated_from: str
    limits: KeyLimits
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    denied_models: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., tenant: _Optional[str] = ..., role: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., rotated_from: _Optional[str] = ..., limits: _Optional[_Union[KeyLimits, _Mapping]] = ..., allowed_models: _Optional[_Iterable[str]] = ..., denied_models: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class KeyLimits(_message.Message):
    __slots__ = ("requests_per_second", "requests_per_minute", "requests_per_day", "tokens_per_second", "tokens_per_minute", "tokens_per_day", "daily_budget_usd", "monthly_budget_usd")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    DAILY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: int
    requests_per_minute: int
    requests_per_day: int
    tokens_per_second: int
    tokens_per_minute: int
    tokens_per_day: int
    daily_budget_usd: float
    monthly_budget_usd: float
    def __init__(self, requests_per_second: _Optional[int] = ..., requests_per_minute: _Optional[int] = ..., requests_per_day: _Optional[int] = ..., tokens_per_second: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., tokens_per_day: _Optional[int] = ..., daily_budget_usd: _Optional[float] = ..., monthly_budget_usd: _Optional[float] = ...) -> None: ...

class CreateKeyRequest(_message.Message):
    __slots__ = ("tenant", "role", "name", "limits", "actor", "allowed_models", "denied_models", "expires_at")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DENIED_MODELS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    role: str
    name: str
    limits: KeyLimits
    actor: Actor
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    denied_models: _containers.RepeatedScalarFieldContainer[str]
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., role: _Optional[str] = ..., name: _Optional[str] = ..., limits: _Optional[_Union[KeyLimits, _Mapping]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., allowed_models: _Optional[_Iterable[str]] = ..., denied_models: _Optional[_Iterable[str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyInfo
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKeyInfo, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("tenant", "include_revoked", "actor")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    include_revoked: bool
    actor: Actor
    def __init__(self, tenant: _Optional[str] = ..., include_revoked: _Optional[bool] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ...) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKeyInfo, _Mapping]]] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("key_id", "actor")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    actor: Actor
    def __init__(self, key_id: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ("key", "secret", "revoked")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyInfo
    secret: str
    revoked: ApiKeyInfo
    def __init__(self, key: _Optional[_Union[ApiKeyInfo, _Mapping]] = ..., secret: _Optional[str] = ..., revoked: _Optional[_Union[ApiKeyInfo, _Mapping]] = ...) -> None: ...

class RevokeKeyRequest(_message.Message):
    __slots__ = ("key_id", "actor")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    actor: Actor
    def __init__(self, key_id: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ...) -> None: ...

class RevokeKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyInfo
    def __init__(self, key: _Optional[_Union[ApiKeyInfo, _Mapping]] = ...) -> None: ...

class UpdateKeyRequest(_message.Message):
    __slots__ = ("key_id", "limits", "reset", "actor", "allowed_models", "denied_models", "expires_at")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DENIED_MODELS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    limits: KeyLimits
    reset: _containers.RepeatedScalarFieldContainer[str]
    actor: Actor
    allowed_models: ModelList
    denied_models: ModelList
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, key_id: _Optional[str] = ..., limits: _Optional[_Union[KeyLimits, _Mapping]] = ..., reset: _Optional[_Iterable[str]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., allowed_models: _Optional[_Union[ModelList, _Mapping]] = ..., denied_models: _Optional[_Union[ModelList, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKeyInfo
    def __init__(self, key: _Optional[_Union[ApiKeyInfo, _Mapping]] = ...) -> None: ...

class ModelList(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[str]] = ...) -> None: ...

class TenantSettings(_message.Message):
    __slots__ = ("requests_per_second", "requests_per_minute", "requests_per_day", "tokens_per_second", "tokens_per_minute", "tokens_per_day", "daily_budget_usd", "monthly_budget_usd", "allowed_models", "denied_models", "user_daily_budget_usd", "user_monthly_budget_usd")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    DAILY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    DENIED_MODELS_FIELD_NUMBER: _ClassVar[int]
    USER_DAILY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    USER_MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: int
    requests_per_minute: int
    requests_per_day: int
    tokens_per_second: int
    tokens_per_minute: int
    tokens_per_day: int
    daily_budget_usd: float
    monthly_budget_usd: float
    allowed_models: ModelList
    denied_models: ModelList
    user_daily_budget_usd: float
    user_monthly_budget_usd: float
    def __init__(self, requests_per_second: _Optional[int] = ..., requests_per_minute: _Optional[int] = ..., requests_per_day: _Optional[int] = ..., tokens_per_second: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., tokens_per_day: _Optional[int] = ..., daily_budget_usd: _Optional[float] = ..., monthly_budget_usd: _Optional[float] = ..., allowed_models: _Optional[_Union[ModelList, _Mapping]] = ..., denied_models: _Optional[_Union[ModelList, _Mapping]] = ..., user_daily_budget_usd: _Optional[float] = ..., user_monthly_budget_usd: _Optional[float] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class GetTenantResponse(_message.Message):
    __slots__ = ("tenant", "settings", "overridden")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    settings: TenantSettings
    overridden: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., settings: _Optional[_Union[TenantSettings, _Mapping]] = ..., overridden: _Optional[_Iterable[str]] = ...) -> None: ...

class SetTenantRequest(_message.Message):
    __slots__ = ("tenant", "settings", "reset", "actor")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    settings: TenantSettings
    reset: _containers.RepeatedScalarFieldContainer[str]
    actor: Actor
    def __init__(self, tenant: _Optional[str] = ..., settings: _Optional[_Union[TenantSettings, _Mapping]] = ..., reset: _Optional[_Iterable[str]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ...) -> None: ...

class SetTenantResponse(_message.Message):
    __slots__ = ("tenant", "settings", "overridden")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    settings: TenantSettings
    overridden: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., settings: _Optional[_Union[TenantSettings, _Mapping]] = ..., overridden: _Optional[_Iterable[str]] = ...) -> None: ...

class Actor(_message.Message):
    __slots__ = ("key_id", "role", "tenant")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    role: str
    tenant: str
    def __init__(self, key_id: _Optional[str] = ..., role: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...
