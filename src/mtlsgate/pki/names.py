"""Render an X.509 distinguished name the three ways Cloudflare exposes it.

``cf.tls_client_auth.cert_{issuer,subject}_dn*`` come in three flavours; this module produces
each from an :class:`~cryptography.x509.Name` (or the DER of one):

``rfc2253(name)``
    Byte-for-byte what ``openssl x509 -noout -subject -nameopt RFC2253`` prints after
    ``subject=`` (``X509_NAME_print_ex`` with ``XN_FLAG_RFC2253``): most specific RDN first,
    ``,`` between RDNs, ``+`` inside a multi-valued RDN (whose members OpenSSL also lists in
    reverse), OpenSSL short names (``emailAddress``, ``street``, ``title``...), ``,+"\\<>;``
    backslash-escaped, a leading ``#`` or space and a trailing space escaped, control characters
    and every byte of a non-ASCII character escaped as ``\\XX`` (so ``Jürgen`` is
    ``J\\C3\\BCrgen``), and an attribute type OpenSSL has no short name for printed as its dotted
    OID with the whole DER value as ``#HEX``.

``rfc4514(name)``
    Cloudflare's plain ``cert_issuer_dn`` / ``cert_subject_dn``: cryptography's
    :meth:`~cryptography.x509.Name.rfc4514_string` semantics, with OpenSSL's short names passed as
    overrides so that for ordinary ASCII names it equals :func:`rfc2253`. Where the two differ:

    * non-ASCII text stays readable UTF-8 (``CN=Jürgen``) instead of ``\\C3\\BC`` escapes;
    * control characters are kept as they are (only NUL becomes ``\\00``);
    * a value that is exactly ``#`` is escaped (``\\#``); OpenSSL does not escape it, because it
      treats a one-character value as "last", not "first";
    * unknown attribute types show their value as text (``1.2.3.4=foo``, cryptography's choice)
      where OpenSSL dumps DER (``1.2.3.4=#0C03666F6F``);
    * members of a multi-valued RDN keep their DER order (``OU=A+OU=B``); OpenSSL reverses them.

``legacy(name)``
    OpenSSL's old one-line form (``X509_NAME_oneline``, what ``-nameopt compat`` prints): least
    specific first, each RDN introduced by ``/``, ``+`` inside a multi-valued RDN, ``/`` and
    ``+`` in values backslash-escaped, and every byte outside printable ASCII written as
    ``\\xHH``. Like OpenSSL it works on the raw value bytes, so a BMPString shows its UTF-16 bytes.

All three work from the DER of the name rather than cryptography's decoded attributes: that is
what OpenSSL sees (raw bytes, exact string type, DER order), and it keeps working for names
cryptography refuses to decode (e.g. a TeletexString holding Latin-1, common in older PKIs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509

# OpenSSL's short names (objects.txt) for attribute types that appear in distinguished names.
# A table rather than a call into libcrypto keeps this module pure and deterministic; the tests
# check every entry against the OpenSSL library pyOpenSSL links. Types missing here render as
# dotted OIDs (with a DER dump in the RFC 2253 form), which is also what OpenSSL does for types
# it does not know.
SHORT_NAMES: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.14": "searchGuide",
    "2.5.4.15": "businessCategory",
    "2.5.4.16": "postalAddress",
    "2.5.4.17": "postalCode",
    "2.5.4.18": "postOfficeBox",
    "2.5.4.19": "physicalDeliveryOfficeName",
    "2.5.4.20": "telephoneNumber",
    "2.5.4.21": "telexNumber",
    "2.5.4.22": "teletexTerminalIdentifier",
    "2.5.4.23": "facsimileTelephoneNumber",
    "2.5.4.24": "x121Address",
    "2.5.4.25": "internationaliSDNNumber",
    "2.5.4.26": "registeredAddress",
    "2.5.4.27": "destinationIndicator",
    "2.5.4.28": "preferredDeliveryMethod",
    "2.5.4.29": "presentationAddress",
    "2.5.4.30": "supportedApplicationContext",
    "2.5.4.31": "member",
    "2.5.4.32": "owner",
    "2.5.4.33": "roleOccupant",
    "2.5.4.34": "seeAlso",
    "2.5.4.35": "userPassword",
    "2.5.4.36": "userCertificate",
    "2.5.4.37": "cACertificate",
    "2.5.4.38": "authorityRevocationList",
    "2.5.4.39": "certificateRevocationList",
    "2.5.4.40": "crossCertificatePair",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.47": "enhancedSearchGuide",
    "2.5.4.48": "protocolInformation",
    "2.5.4.49": "distinguishedName",
    "2.5.4.50": "uniqueMember",
    "2.5.4.51": "houseIdentifier",
    "2.5.4.52": "supportedAlgorithms",
    "2.5.4.53": "deltaRevocationList",
    "2.5.4.54": "dmdName",
    "2.5.4.65": "pseudonym",
    "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.2.840.113549.1.9.8": "unstructuredAddress",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.3": "mail",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}

# Universal string tags and how many bytes OpenSSL reads per character (crypto/asn1/a_strex.c,
# tag2nbyte): 0 = UTF-8, 1 = one byte (taken as Latin-1), 2 = BMPString, 4 = UniversalString.
# Any other type is dumped as DER in the RFC 2253 form (ASN1_STRFLGS_DUMP_UNKNOWN).
_CHAR_WIDTH: dict[int, int] = {12: 0, 18: 1, 19: 1, 20: 1, 22: 1, 23: 1, 24: 1, 26: 1, 28: 4, 30: 2}
_UTF8STRING, _BITSTRING, _BMPSTRING, _UNIVERSALSTRING, _GENERALSTRING = 12, 3, 30, 28, 27

# Characters RFC 2253 (and OpenSSL's ASN1_STRFLGS_ESC_2253) escape with a backslash anywhere.
_RFC2253_SPECIAL = frozenset(b',+"\\<>;')


@dataclass(frozen=True)
class _Attribute:
    """One attribute of a name, as found in the DER."""

    oid: str
    tag: int  # the whole identifier octet of the value
    content: bytes  # value octets without tag and length
    tlv: bytes  # the complete value encoding, for '#'-dumps


# -- a minimal DER reader: enough for Name and the head of a TBSCertificate ----------------------


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (identifier octet, content start, content end) of the element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        # High tag numbers never occur in names; refusing them keeps the reader small.
        raise ValueError("unsupported DER tag")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (tag, element start, content start, content end) for each element in a range."""
    pos = start
    while pos < end:
        tag, cstart, cend = _tlv(data, pos)
        yield tag, pos, cstart, cend
        pos = cend


def _oid(content: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _rdns(der: bytes) -> list[list[_Attribute]]:
    """Parse Name DER into RDNs (least specific first), attributes in DER order."""
    tag, start, end = _tlv(der, 0)
    if tag != 0x30:
        raise ValueError("a Name is a SEQUENCE")
    rdns: list[list[_Attribute]] = []
    for set_tag, _, set_start, set_end in _children(der, start, end):
        if set_tag != 0x31:
            raise ValueError("an RDN is a SET")
        rdn: list[_Attribute] = []
        for seq_tag, _, seq_start, seq_end in _children(der, set_start, set_end):
            parts = list(_children(der, seq_start, seq_end))
            if seq_tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise ValueError("an attribute is SEQUENCE { OID, value }")
            (_, _, oid_start, oid_end), (vtag, vpos, vstart, vend) = parts
            rdn.append(
                _Attribute(_oid(der[oid_start:oid_end]), vtag, der[vstart:vend], der[vpos:vend])
            )
        rdns.append(rdn)
    return rdns


def _der(name: x509.Name | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.public_bytes()


# -- RFC 2253, as OpenSSL's X509_NAME_print_ex(XN_FLAG_RFC2253) ----------------------------------


def _code_points(attr: _Attribute) -> list[int] | None:
    """The characters OpenSSL would read from the value, or None if it dumps it as DER."""
    width = _CHAR_WIDTH.get(attr.tag)
    if width is None:
        return None
    data = attr.content
    if width in (0, 1):
        # UTF8String is passed through byte by byte (each non-ASCII byte then gets escaped,
        # giving the same text as escaping the UTF-8 encoding); 1-byte types are Latin-1.
        return list(data)
    if len(data) % width:
        return None
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


def _utf8_bytes(code_point: int, tag: int) -> bytes:
    if tag == _UTF8STRING or code_point < 0x80:
        # Raw UTF-8 bytes (or ASCII): already one byte each.
        return bytes([code_point])
    # OpenSSL's UTF8_putc also encodes lone surrogates; 'surrogatepass' does the same.
    return chr(code_point).encode("utf-8", "surrogatepass")


def _escape_rfc2253(attr: _Attribute) -> str:
    points = _code_points(attr)
    if points is None or any(p > 0x10FFFF for p in points):
        return "#" + attr.tlv.hex().upper()
    out: list[str] = []
    last = len(points) - 1
    for index, point in enumerate(points):
        # OpenSSL flags each character as "first" or "last" and lets "last" win, so a value
        # that is just "#" stays unescaped while a value that is just " " is escaped.
        first = index == 0 and index != last
        for byte in _utf8_bytes(point, attr.tag):
            if byte in _RFC2253_SPECIAL or (byte == 0x20 and (first or index == last)):
                out.append("\\" + chr(byte))
            elif byte == 0x23 and first:
                out.append("\\#")
            elif byte < 0x20 or byte >= 0x7F:
                out.append(f"\\{byte:02X}")
            else:
                out.append(chr(byte))
    return "".join(out)


def rfc2253(name: x509.Name | bytes) -> str:
    """``openssl x509 -nameopt RFC2253`` rendering of ``name`` (a Name or its DER)."""
    parts: list[str] = []
    for rdn in reversed(_rdns(_der(name))):
        members = []
        for attr in reversed(rdn):
            short = SHORT_NAMES.get(attr.oid)
            if short is None:
                # XN_FLAG_DUMP_UNKNOWN_FIELDS: no short name, so the value is dumped as DER.
                members.append(f"{attr.oid}=#{attr.tlv.hex().upper()}")
            else:
                members.append(f"{short}={_escape_rfc2253(attr)}")
        parts.append("+".join(members))
    return ",".join(parts)


# -- RFC 4514, with cryptography's Name.rfc4514_string semantics ---------------------------------


def _text_4514(attr: _Attribute) -> str | bytes | None:
    """The value as cryptography would decode it (str, or bytes for a BIT STRING)."""
    if attr.tag == _BITSTRING:
        return attr.content[1:]  # drop the unused-bits octet, as cryptography does
    if attr.tag == _BMPSTRING:
        return attr.content.decode("utf-16-be", "replace")
    if attr.tag == _UNIVERSALSTRING:
        return attr.content.decode("utf-32-be", "replace")
    if attr.tag in _CHAR_WIDTH or attr.tag in (21, 25, _GENERALSTRING):
        try:
            return attr.content.decode("utf-8")
        except UnicodeDecodeError:
            # cryptography refuses such names outright; Latin-1 is what these bytes almost
            # always are (TeletexString in older European PKIs), and it never fails.
            return attr.content.decode("latin-1")
    return None


def _escape_4514(value: str) -> str:
    # The same rules, in the same order, as cryptography.x509.name._escape_dn_value.
    if not value:
        return ""
    for char in '\\"+,;<>':
        value = value.replace(char, "\\" + char)
    value = value.replace("\0", "\\00")
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def rfc4514(name: x509.Name | bytes) -> str:
    """RFC 4514 rendering (``cert_subject_dn``): ``Name.rfc4514_string`` with OpenSSL's names.

    Equal to ``name.rfc4514_string({oid: short name})`` for every name cryptography can decode;
    see the module docstring for where it differs from :func:`rfc2253`.
    """
    parts: list[str] = []
    for rdn in reversed(_rdns(_der(name))):
        members = []
        for attr in rdn:
            key = SHORT_NAMES.get(attr.oid, attr.oid)
            value = _text_4514(attr)
            if value is None:
                # Not a string type: RFC 4514 section 2.4's "#" + hex of the BER encoding.
                members.append(f"{key}=#{attr.tlv.hex()}")
            elif isinstance(value, bytes):
                members.append(f"{key}=#{value.hex()}" if value else f"{key}=")
            else:
                members.append(f"{key}={_escape_4514(value)}")
        parts.append("+".join(members))
    return ",".join(parts)


# -- OpenSSL's X509_NAME_oneline ------------------------------------------------------------------


def _oneline_bytes(attr: _Attribute) -> bytes:
    data = attr.content
    if attr.tag == _GENERALSTRING and len(data) % 4 == 0:
        # X509_NAME_oneline's heuristic: a GeneralString whose only non-zero bytes sit at every
        # fourth position is treated as UCS-4 and only those bytes are printed.
        nonzero = {i & 3 for i, b in enumerate(data) if b}
        if not nonzero & {0, 1, 2}:
            return bytes(data[i] for i in range(3, len(data), 4))
    return data


def legacy(name: x509.Name | bytes) -> str:
    """``openssl x509 -nameopt compat`` (``X509_NAME_oneline``) rendering of ``name``."""
    out: list[str] = []
    for rdn in _rdns(_der(name)):
        for position, attr in enumerate(rdn):
            out.append("+" if position else "/")
            out.append(SHORT_NAMES.get(attr.oid, attr.oid))
            out.append("=")
            for byte in _oneline_bytes(attr):
                if byte < 0x20 or byte > 0x7E:
                    out.append(f"\\x{byte:02X}")
                elif byte in (0x2F, 0x2B):  # '/' and '+' would read as separators
                    out.append("\\" + chr(byte))
                else:
                    out.append(chr(byte))
    return "".join(out)


def name_der_from_tbs(tbs: bytes) -> tuple[bytes, bytes]:
    """(issuer DER, subject DER) from a TBSCertificate, without decoding the names.

    Lets callers render names of certificates whose names cryptography refuses to decode.
    """
    _, start, end = _tlv(tbs, 0)
    fields = list(_children(tbs, start, end))
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version is optional
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5:
        raise ValueError("truncated TBSCertificate")
    (_, ipos, _, iend), (_, spos, _, send) = fields[2], fields[4]
    return tbs[ipos:iend], tbs[spos:send]
