"""Value types of the Rules language and the registry of typed fields.

Runtime representation of each type (what facts hold and compiled rules compute with):
Bool → bool, Int → int, String → str, IP → ipaddress.IPv4Address | IPv6Address,
Array<T> → list or tuple of T, Map<T> → dict[str, T] (keys lowercase for headers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Type:
    kind: str  # "Bool" | "Int" | "String" | "IP" | "Array" | "Map"
    elem: Type | None = None

    def __str__(self) -> str:
        return f"{self.kind}<{self.elem}>" if self.elem is not None else self.kind

    @property
    def is_container(self) -> bool:
        return self.kind in ("Array", "Map")


BOOL = Type("Bool")
INT = Type("Int")
STRING = Type("String")
IP = Type("IP")


def array(elem: Type) -> Type:
    return Type("Array", elem)


def map_of(elem: Type) -> Type:
    return Type("Map", elem)


def default_value(t: Type) -> object:
    """What a field holds when the edge has nothing for it (false, "", 0, empty)."""
    if t == BOOL:
        return False
    if t == INT:
        return 0
    if t == STRING:
        return ""
    if t == IP:
        import ipaddress

        return ipaddress.IPv4Address(0)
    if t.kind == "Array":
        return ()
    return {}


@dataclass(frozen=True)
class Field:
    name: str
    type: Type
    # The facts key the compiled rule reads: `raw.` copies read the same facts as their
    # transformed twins, because mtlsgate runs no transform before the phases that read them.
    key: str


class Scheme:
    def __init__(self, fields: dict[str, Type], unavailable: dict[str, str]) -> None:
        self._fields: dict[str, Field] = {}
        for name, t in fields.items():
            self._fields[name] = Field(name, t, name)
            if name.startswith("http."):
                self._fields["raw." + name] = Field("raw." + name, t, name)
        self._unavailable = unavailable

    def get(self, name: str) -> Field | None:
        return self._fields.get(name)

    def unavailable_reason(self, name: str) -> str | None:
        """Why a field that Cloudflare has cannot be used here, or None if it is simply unknown."""
        for prefix, reason in self._unavailable.items():
            if name == prefix or name.startswith(prefix + "."):
                return reason
        return None

    def names(self) -> list[str]:
        return sorted(self._fields)
