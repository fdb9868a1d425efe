from atp.router.v1 import router_pb2 as _router_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportExclusionsRequest(_message.Message):
    __slots__ = ("replica_id", "sequence", "exclusions")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    sequence: int
    exclusions: _containers.RepeatedCompositeFieldContainer[_router_pb2.Exclusion]
    def __init__(self, replica_id: _Optional[str] = ..., sequence: _Optional[int] = ..., exclusions: _Optional[_Iterable[_Union[_router_pb2.Exclusion, _Mapping]]] = ...) -> None: ...

class ReportExclusionsResponse(_message.Message):
    __slots__ = ("applied", "excluded_models")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_MODELS_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    excluded_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, applied: _Optional[bool] = ..., excluded_models: _Optional[_Iterable[str]] = ...) -> None: ...
