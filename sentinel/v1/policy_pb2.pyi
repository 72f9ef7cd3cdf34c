import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sentinel.v1 import command_pb2 as _command_pb2
from sentinel.v1 import signing_pb2 as _signing_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_ALLOW: _ClassVar[Verdict]
    VERDICT_DENY: _ClassVar[Verdict]
    VERDICT_NEEDS_APPROVAL: _ClassVar[Verdict]

class RuleScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_SCOPE_UNSPECIFIED: _ClassVar[RuleScope]
    RULE_SCOPE_NODE: _ClassVar[RuleScope]
    RULE_SCOPE_FLEET: _ClassVar[RuleScope]
VERDICT_UNSPECIFIED: Verdict
VERDICT_ALLOW: Verdict
VERDICT_DENY: Verdict
VERDICT_NEEDS_APPROVAL: Verdict
RULE_SCOPE_UNSPECIFIED: RuleScope
RULE_SCOPE_NODE: RuleScope
RULE_SCOPE_FLEET: RuleScope

class PolicyBundle(_message.Message):
    __slots__ = ("version", "created_at", "expires_at", "author", "source_yaml", "envelope", "sha256")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_YAML_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    author: str
    source_yaml: str
    envelope: _signing_pb2.SignedEnvelope
    sha256: bytes
    def __init__(self, version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., author: _Optional[str] = ..., source_yaml: _Optional[str] = ..., envelope: _Optional[_Union[_signing_pb2.SignedEnvelope, _Mapping]] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class RuleResult(_message.Message):
    __slots__ = ("rule_id", "kind", "scope", "verdict", "reason", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    kind: str
    scope: RuleScope
    verdict: Verdict
    reason: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, rule_id: _Optional[str] = ..., kind: _Optional[str] = ..., scope: _Optional[_Union[RuleScope, str]] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., reason: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PolicyDecision(_message.Message):
    __slots__ = ("verdict", "rules", "policy_version", "evaluated_at")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    rules: _containers.RepeatedCompositeFieldContainer[RuleResult]
    policy_version: int
    evaluated_at: _timestamp_pb2.Timestamp
    def __init__(self, verdict: _Optional[_Union[Verdict, str]] = ..., rules: _Optional[_Iterable[_Union[RuleResult, _Mapping]]] = ..., policy_version: _Optional[int] = ..., evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("bundle",)
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    bundle: PolicyBundle
    def __init__(self, bundle: _Optional[_Union[PolicyBundle, _Mapping]] = ...) -> None: ...

class PutPolicyRequest(_message.Message):
    __slots__ = ("source_yaml",)
    SOURCE_YAML_FIELD_NUMBER: _ClassVar[int]
    source_yaml: str
    def __init__(self, source_yaml: _Optional[str] = ...) -> None: ...

class PutPolicyResponse(_message.Message):
    __slots__ = ("bundle",)
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    bundle: PolicyBundle
    def __init__(self, bundle: _Optional[_Union[PolicyBundle, _Mapping]] = ...) -> None: ...

class ListPolicyVersionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPolicyVersionsResponse(_message.Message):
    __slots__ = ("bundles", "next_page_token")
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bundles: _containers.RepeatedCompositeFieldContainer[PolicyBundle]
    next_page_token: str
    def __init__(self, bundles: _Optional[_Iterable[_Union[PolicyBundle, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EvaluatePolicyRequest(_message.Message):
    __slots__ = ("node_id", "action", "parameters", "at", "policy_version")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _command_pb2.ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_command_pb2.ParameterValue, _Mapping]] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    action: str
    parameters: _containers.MessageMap[str, _command_pb2.ParameterValue]
    at: _timestamp_pb2.Timestamp
    policy_version: int
    def __init__(self, node_id: _Optional[str] = ..., action: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _command_pb2.ParameterValue]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., policy_version: _Optional[int] = ...) -> None: ...

class EvaluatePolicyResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: PolicyDecision
    def __init__(self, decision: _Optional[_Union[PolicyDecision, _Mapping]] = ...) -> None: ...
