"""``gateway.yaml``: the DICOM node's settings, validated strictly (unknown keys and wrong types are
one-line :class:`~medseg.errors.MedsegConfigError` messages naming the key, as for pipelines).

Example::

    ae_title: MEDSEG
    port: 11112
    work_dir: /var/lib/medseg-gateway
    allowed_callers:
      - {ae_title: ORTHANC, host: 10.0.0.5}
    routes:
      - {name: liver-ct, model: /models/liver, modality: CT, min_slices: 20}
    destinations:
      - ORTHANC@10.0.0.5:4242
      - https://pacs.example.org/dicom-web
    dicomweb_receiver: {host: 0.0.0.0, port: 8043, token_env: MEDSEG_STOW_TOKEN}
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from medseg.config import Strict, format_validation_error, read_yaml_mapping
from medseg.errors import MedsegConfigError

#: AE titles: 1 to 16 characters, no backslash or control characters (PS3.5 6.2, VR AE).
_AE = re.compile(r"^[^\\\x00-\x1f]{1,16}$")
_DIMSE_DEST = re.compile(r"^(?P<ae>[^@\\]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")


def _ae_title(value: str) -> str:
    value = value.strip()
    if not _AE.match(value):
        raise ValueError("an AE title has 1 to 16 characters and no backslash")
    return value


class Caller(Strict):
    """A calling AE allowed to store; ``host`` (an IP address), when given, must match too."""

    ae_title: str
    host: str | None = None

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return _ae_title(v)

    @field_validator("host")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.ip_address(v)  # ValueError: "... does not appear to be an IPv4 or IPv6 address"
        return v


class Route(Strict):
    """A routing rule: a series matching every given criterion goes to ``model`` (first matching rule wins).

    ``series_description`` is a regular expression searched case-insensitively; ``body_part`` compares
    BodyPartExamined case-insensitively; slice counts are inclusive bounds.
    """

    name: str
    model: Path
    modality: str | None = None
    body_part: str | None = None
    series_description: str | None = None
    min_slices: int = Field(1, ge=1)
    max_slices: int | None = Field(None, ge=1)

    @field_validator("series_description")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return v

    @model_validator(mode="after")
    def _bounds(self) -> Route:
        if self.max_slices is not None and self.max_slices < self.min_slices:
            raise ValueError("max_slices is below min_slices")
        return self


class Destination(Strict):
    """Where SEGs go: ``AE@host:port`` (DIMSE C-STORE) or an ``http(s)://`` DICOMweb root (STOW-RS).

    ``token_env`` names an environment variable holding a bearer token for DICOMweb (never the token itself);
    ``ca`` a PEM bundle that signs an ``https://`` server's certificate (default: the system's trust store).
    """

    target: str
    token_env: str | None = None
    ca: Path | None = None
    tls: bool = False

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        v = v.strip()
        if v.startswith(("http://", "https://")):
            return v.rstrip("/")
        m = _DIMSE_DEST.match(v)
        if not m or not 0 < int(m["port"]) < 65536:
            raise ValueError(f"'{v}': expected AE@host:port (DIMSE) or an http(s):// DICOMweb URL")
        return v

    @property
    def is_dicomweb(self) -> bool:
        return self.target.startswith(("http://", "https://"))

    def dimse(self) -> tuple[str, str, int]:
        """``(ae_title, host, port)`` of a DIMSE destination."""
        m = _DIMSE_DEST.match(self.target)
        assert m is not None, self.target
        return m["ae"], m["host"], int(m["port"])


class TlsConfig(Strict):
    """DIMSE over TLS: the C-STORE SCP presents ``cert``/``key``; with ``ca``, callers must present a certificate
    signed by it. Destinations with ``tls: true`` are verified against ``ca`` (and get ``cert`` as client certificate)."""

    cert: Path
    key: Path
    ca: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        if self.ca is not None:
            context.load_verify_locations(str(self.ca))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca) if self.ca else None)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


class RetryConfig(Strict):
    """Sending retries: the delay doubles from ``initial_s`` up to ``max_s``; ``max_attempts`` 0 retries for ever."""

    initial_s: float = Field(5.0, gt=0)
    max_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(0, ge=0)


class HttpConfig(Strict):
    """The monitoring endpoint (``/health``, ``/jobs``): loopback only by default; port 0 picks a free one."""

    host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, lt=65536)


class DicomwebReceiver(Strict):
    """The optional STOW-RS receiver (``POST .../studies``): HTTPS when ``cert`` and ``key`` are given, and a
    bearer token required when ``token_env`` names the environment variable holding it. Requests from hosts
    outside ``allowed_hosts`` (IP addresses or networks; empty: any host) get 403, bodies over ``max_body_mb``
    megabytes (2**20 bytes) 413."""

    host: str = "127.0.0.1"
    port: int = Field(8043, ge=0, lt=65536)
    token_env: str | None = None
    cert: Path | None = None
    key: Path | None = None
    max_body_mb: float = Field(2048.0, gt=0)
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("allowed_hosts")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"'{entry}' is not an IP address or network (such as 10.0.0.5 or 10.0.0.0/24)") from None
        return v

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))

    def host_allowed(self, address: str) -> bool:
        """True when ``address`` is in ``allowed_hosts`` (or the list is empty)."""
        if not self.allowed_hosts:
            return True
        try:
            ip = ipaddress.ip_address(address.removeprefix("::ffff:"))
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(entry, strict=False) for entry in self.allowed_hosts)

    @model_validator(mode="after")
    def _pair(self) -> DicomwebReceiver:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key (HTTPS) or neither")
        return self


class GatewayConfig(Strict):
    """Settings of ``medseg gateway`` (see the module docstring for an example)."""

    ae_title: str = "MEDSEG"
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=0, lt=65536)
    work_dir: Path
    allowed_callers: list[Caller] = Field(default_factory=list)
    allow_any_caller: bool = False
    routes: list[Route] = Field(min_length=1)
    unmatched: Literal["drop", "keep"] = "drop"
    series_timeout_s: float = Field(10.0, gt=0)
    destinations: list[Destination] = Field(default_factory=list)
    archive_dir: Path | None = None
    device: str = "auto"
    concurrency: int = Field(1, ge=1)
    retry: RetryConfig = RetryConfig()
    http: HttpConfig = HttpConfig()
    tls: TlsConfig | None = None
    dicomweb_receiver: DicomwebReceiver | None = None
    keep_received: bool = False
    log_phi: bool = False

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return _ae_title(v)

    @field_validator("destinations", mode="before")
    @classmethod
    def _destination_strings(cls, v: object) -> object:
        return [{"target": d} if isinstance(d, str) else d for d in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _callers(self) -> GatewayConfig:
        if any(d.tls for d in self.destinations) and self.tls is None:
            raise ValueError("a destination has tls: true but there is no tls section (cert, key, ca)")
        if not self.allowed_callers and not self.allow_any_caller:
            raise ValueError("allowed_callers is empty: list the AE titles (and hosts) that may store, or set allow_any_caller: true")
        return self

    def resolve(self, base: Path) -> GatewayConfig:
        """Paths relative to the YAML file's folder made absolute."""
        fix = lambda p: p if p is None or p.is_absolute() else (base / p).resolve()  # noqa: E731
        routes = [r.model_copy(update={"model": fix(r.model)}) for r in self.routes]
        destinations = [d.model_copy(update={"ca": fix(d.ca)}) for d in self.destinations]
        web = self.dicomweb_receiver and self.dicomweb_receiver.model_copy(
            update={"cert": fix(self.dicomweb_receiver.cert), "key": fix(self.dicomweb_receiver.key)})
        tls = self.tls and self.tls.model_copy(update={"cert": fix(self.tls.cert), "key": fix(self.tls.key), "ca": fix(self.tls.ca)})
        return self.model_copy(update={"work_dir": fix(self.work_dir), "archive_dir": fix(self.archive_dir), "routes": routes, "tls": tls,
                                      "destinations": destinations, "dicomweb_receiver": web})


def validate_gateway(raw: dict, source: str = "gateway config", base: Path | None = None) -> GatewayConfig:
    """Validate a mapping; ``base`` resolves relative paths (default: the current folder)."""
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise MedsegConfigError(format_validation_error(exc, GatewayConfig, source)) from exc
    return config.resolve(base or Path.cwd())


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and validate ``gateway.yaml``; relative paths are relative to its folder.

    Raises:
        MedsegConfigError: missing file, YAML error, unknown key or wrong value (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise MedsegConfigError(f"{path}: gateway config not found")
    return validate_gateway(read_yaml_mapping(path), str(path), path.parent.resolve())


__all__ = ["Caller", "Destination", "DicomwebReceiver", "GatewayConfig", "HttpConfig", "RetryConfig", "Route", "TlsConfig", "load_gateway_config", "validate_gateway"]
