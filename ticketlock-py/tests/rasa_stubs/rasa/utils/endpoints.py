"""Stand-in for rasa.utils.endpoints: EndpointConfig as Rasa 3.6 builds it,
and read_endpoint_config (YAML with ${VAR} substitution, as Rasa's
read_config_file does)."""

import os
import re
from typing import Any, Dict, Optional, Text

import yaml


class EndpointConfig:
    def __init__(
        self,
        url: Optional[Text] = None,
        params: Optional[Dict[Text, Any]] = None,
        headers: Optional[Dict[Text, Any]] = None,
        basic_auth: Optional[Dict[Text, Text]] = None,
        token: Optional[Text] = None,
        token_name: Text = "token",
        cafile: Optional[Text] = None,
        **kwargs: Any,
    ) -> None:
        self.url = url
        self.params = params or {}
        self.headers = headers or {}
        self.basic_auth = basic_auth or {}
        self.token = token
        self.token_name = token_name
        self.type = kwargs.pop("store_type", kwargs.pop("type", None))
        self.cafile = cafile
        self.kwargs = kwargs

    @classmethod
    def from_dict(cls, data: Dict[Text, Any]) -> "EndpointConfig":
        return EndpointConfig(**data)


_VAR = re.compile(r"\$\{([^}]+)\}")


def _substitute(value: Any) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: os.environ[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v) for v in value]
    return value


def read_endpoint_config(filename: Text, endpoint_type: Text) -> Optional[EndpointConfig]:
    if not filename:
        return None
    with open(filename, encoding="utf-8") as f:
        content = _substitute(yaml.safe_load(f) or {})
    if content.get(endpoint_type) is None:
        return None
    return EndpointConfig.from_dict(content[endpoint_type])
