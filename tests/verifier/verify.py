#!/usr/bin/env python3
"""Independent reference verifier for the Palisade audit log (AUDIT-SPEC v1).

Written from /work/shared/AUDIT-SPEC.md only. Standard library plus the
`cryptography` package (Ed25519 only).

    verify.py --jwks FILE --checkpoint FILE --entries FILE
              [--trusted-checkpoint FILE]... [--json]

Exit codes: 0 verified, 1 tampering found, 2 usage or I/O error.
"""

import argparse
import base64
import hashlib
import json
import re
import sys
from decimal import Decimal

EXIT_VERIFIED = 0
EXIT_TAMPERED = 1
EXIT_ERROR = 2

MAX_ENTRY_BYTES = 65535
JWS_TYP = "tlog-checkpoint+jws"
JWS_ALGS = ("EdDSA", "Ed25519")
RESULTS = ("success", "denied", "error")
GENESIS_PREFIX = b"audit-log/v1 genesis\n"
PII_PREFIX = b"audit-pii/v1\x00"
NOTE_SIG_PREFIX = "\u2014 "  # em dash + space (C2SP signed-note)
MAX_SAFE_INT = 2 ** 53


class UsageError(Exception):
    """Exit 2: bad arguments, unreadable file, unparsable JWKS/checkpoint file."""


class Tampered(Exception):
    """Exit 1: something wrong with the contents of the log."""

    def __init__(self, reason, seq=None):
        super().__init__(reason)
        self.reason = reason
        self.seq = seq


# --------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------

_B64URL_RE = re.compile(r"\A[A-Za-z0-9_-]*={0,2}\Z")
_B64STD_RE = re.compile(r"\A[A-Za-z0-9+/]*={0,2}\Z")


def b64url(data):
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64std(data):
    return base64.b64encode(data).decode("ascii")


def b64url_decode(s):
    """Strict base64url decode, padding optional, canonical trailing bits."""
    if not isinstance(s, str) or not _B64URL_RE.match(s):
        raise ValueError("not base64url")
    bare = s.rstrip("=")
    if "=" in s and len(s) % 4 != 0:
        raise ValueError("bad base64url padding")
    if len(bare) % 4 == 1:
        raise ValueError("bad base64url length")
    data = base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    if b64url(data) != bare:
        raise ValueError("non-canonical base64url")
    return data


def b64std_decode(s):
    """Strict standard base64 decode, padding required, canonical."""
    if not isinstance(s, str) or not _B64STD_RE.match(s) or len(s) % 4 != 0:
        raise ValueError("not padded standard base64")
    data = base64.b64decode(s, validate=True)
    if b64std(data) != s:
        raise ValueError("non-canonical base64")
    return data


def _no_dup_pairs(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError("duplicate member %r" % k)
        obj[k] = v
    return obj


def _reject_float(s):
    raise ValueError("floating-point number %s not allowed" % s)


def _reject_constant(s):
    raise ValueError("non-JSON constant %s" % s)


def strict_json(data, allow_floats=False):
    """Parse JSON (bytes must be UTF-8), rejecting duplicate members and NaN/Infinity.

    Floats are rejected unless allow_floats, in which case they become Decimal.
    """
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    return json.loads(
        data,
        object_pairs_hook=_no_dup_pairs,
        parse_float=Decimal if allow_floats else _reject_float,
        parse_constant=_reject_constant,
    )


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------
# RFC 8785 JSON canonicalization
# --------------------------------------------------------------------------

_JCS_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f",
            "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JCS_ESC_RE = re.compile(r'["\\\x00-\x1f]')


def _jcs_esc(m):
    ch = m.group(0)
    return _JCS_ESC.get(ch) or "\\u%04x" % ord(ch)


def _jcs_number(v):
    if isinstance(v, float):
        if v != v or abs(v) > MAX_SAFE_INT or v != int(v):
            raise ValueError("non-integral number in JCS value")
        v = int(v)
    elif isinstance(v, Decimal):
        if not v.is_finite() or abs(v) > MAX_SAFE_INT or v != v.to_integral_value():
            raise ValueError("non-integral number in JCS value")
        v = int(v)
    return str(v)


def jcs_text(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float, Decimal)):
        return _jcs_number(v)
    if isinstance(v, str):
        return '"' + _JCS_ESC_RE.sub(_jcs_esc, v) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(jcs_text(x) for x in v) + "]"
    if isinstance(v, dict):
        for k in v:
            if not isinstance(k, str):
                raise ValueError("non-string object key")
        keys = sorted(v, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(jcs_text(k) + ":" + jcs_text(v[k]) for k in keys) + "}"
    raise ValueError("value of type %s cannot be canonicalized" % type(v).__name__)


def jcs(v):
    """RFC 8785 canonical UTF-8 bytes (lone surrogates are rejected)."""
    return jcs_text(v).encode("utf-8")


# --------------------------------------------------------------------------
# Hashes and Merkle tree (RFC 6962 / RFC 9162)
# --------------------------------------------------------------------------

def sha256(data):
    return hashlib.sha256(data).digest()


def leaf_hash(entry_bytes):
    return hashlib.sha256(b"\x00" + entry_bytes).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = sha256(b"")


def genesis_prev(ws):
    return b64url(sha256(GENESIS_PREFIX + ws.encode("utf-8")))


def pii_commitment(salt, value):
    return b64url(sha256(PII_PREFIX + salt + jcs(value)))


class Frontier:
    """Compact range [0, n): one perfect-subtree hash per set bit of n."""

    __slots__ = ("n", "stack")

    def __init__(self):
        self.n = 0
        self.stack = []  # hashes of perfect subtrees, largest (leftmost) first

    def add(self, leaf):
        h = leaf
        n = self.n
        stack = self.stack
        while n & 1:
            h = node_hash(stack.pop(), h)
            n >>= 1
        stack.append(h)
        self.n += 1

    def root(self):
        if not self.stack:
            return EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


# --------------------------------------------------------------------------
# Ed25519 (strict: canonical encodings, no small-order A or R, S < L)
# --------------------------------------------------------------------------

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(b):
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x == 0 and sign:
        return None
    if (x & 1) != sign:
        x = _P - x
    return (x, y)


def _point_add(p, q):
    x1, y1 = p
    x2, y2 = q
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return (x3, y3)


def _acceptable_point(b):
    """Canonical encoding of a point that is not of small order."""
    pt = _decode_point(b)
    if pt is None:
        return False
    for _ in range(3):
        pt = _point_add(pt, pt)
    return pt != (0, 1)


def ed25519_verify(public_key, signature, message):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(public_key) != 32 or len(signature) != 64:
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    if not _acceptable_point(public_key) or not _acceptable_point(signature[:32]):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


# --------------------------------------------------------------------------
# JWKS, checkpoints, JWS, signed notes
# --------------------------------------------------------------------------

def jwk_thumbprint(x_b64url):
    """RFC 7638 thumbprint of an OKP key."""
    canon = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % x_b64url
    return b64url(sha256(canon.encode("ascii")))


def note_key_id(name, public_key):
    return sha256(name.encode("utf-8") + b"\n\x01" + public_key)[:4]


def note_vkey(name, public_key):
    return "%s+%s+%s" % (name, note_key_id(name, public_key).hex(),
                         b64std(b"\x01" + public_key))


def read_json_file(path, what):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError("cannot read %s %s: %s" % (what, path, e.strerror or e))
    try:
        obj = strict_json(raw, allow_floats=True)
    except (ValueError, RecursionError) as e:
        raise UsageError("cannot parse %s %s: %s" % (what, path, e))
    if not isinstance(obj, dict):
        raise UsageError("cannot parse %s %s: not a JSON object" % (what, path))
    return obj


def load_jwks(path):
    """Returns (keys, expected_origin); keys is a list of (kid, 32-byte public key)."""
    jwks = read_json_file(path, "JWKS")
    if not isinstance(jwks.get("keys"), list):
        raise UsageError("cannot parse JWKS %s: no \"keys\" array" % path)
    keys = []
    for k in jwks["keys"]:
        if not isinstance(k, dict) or k.get("kty") != "OKP" or k.get("crv") != "Ed25519":
            continue
        if k.get("use", "sig") != "sig" or k.get("alg", "EdDSA") not in JWS_ALGS:
            continue
        try:
            x = b64url_decode(k.get("x"))
        except ValueError:
            continue
        if len(x) != 32:
            continue
        kid = k.get("kid")
        if not isinstance(kid, str):
            kid = jwk_thumbprint(b64url(x))
        keys.append((kid, x))
    origin = None
    audit_log = jwks.get("audit_log")
    if audit_log is not None:
        if not isinstance(audit_log, dict):
            raise UsageError("cannot parse JWKS %s: \"audit_log\" is not an object" % path)
        origin = audit_log.get("origin")
        if origin is not None and not isinstance(origin, str):
            raise UsageError("cannot parse JWKS %s: \"audit_log.origin\" is not a string" % path)
    return keys, origin


_SIZE_RE = re.compile(r"\A(0|[1-9][0-9]{0,18})\Z")


def parse_checkpoint_body(text):
    """C2SP tlog-checkpoint without extension lines -> (origin, size, root bytes, root b64)."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise ValueError("checkpoint body must be exactly three newline-terminated lines")
    origin, size_s, root_s = lines[0], lines[1], lines[2]
    if not origin:
        raise ValueError("empty origin line")
    if not _SIZE_RE.match(size_s) or int(size_s) >= 2 ** 63:
        raise ValueError("bad tree size line %r" % size_s)
    try:
        root = b64std_decode(root_s)
    except ValueError:
        root = None
    if root is None or len(root) != 32:
        raise ValueError("root line is not a padded standard base64 32-byte hash")
    return origin, int(size_s), root, root_s


def verify_note(note, body_text, origin, public_key, label):
    if not isinstance(note, str):
        raise Tampered("%s: \"note\" is not a string" % label)
    split = note.rfind("\n\n")
    if split < 0:
        raise Tampered("%s: malformed signed note" % label)
    text, sigs = note[:split + 1], note[split + 2:]
    if text != body_text:
        raise Tampered("%s: signed note body differs from the JWS payload" % label)
    if not sigs.endswith("\n"):
        raise Tampered("%s: malformed signed note signature block" % label)
    key_id = note_key_id(origin, public_key)
    found = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith(NOTE_SIG_PREFIX):
            raise Tampered("%s: malformed signed note signature line" % label)
        name, sep, sig_b64 = line[len(NOTE_SIG_PREFIX):].partition(" ")
        if not name or not sep or " " in sig_b64:
            raise Tampered("%s: malformed signed note signature line" % label)
        try:
            blob = b64std_decode(sig_b64)
        except ValueError:
            raise Tampered("%s: malformed signed note signature" % label)
        if len(blob) < 5:
            raise Tampered("%s: malformed signed note signature" % label)
        if name == origin and blob[:4] == key_id:
            if len(blob) != 68 or not ed25519_verify(public_key, blob[4:], text.encode("utf-8")):
                raise Tampered("%s: signed note signature does not verify" % label)
            found = True
    if not found:
        raise Tampered("%s: signed note carries no signature by %s key %s"
                       % (label, origin, key_id.hex()))


class Checkpoint:
    __slots__ = ("origin", "size", "root", "root_b64", "label")


def verify_checkpoint(cp, keys, expected_origin, label):
    """Verify a checkpoint object; raise Tampered on any problem."""
    jws = cp.get("jws")
    if not isinstance(jws, str):
        raise Tampered("%s: no \"jws\" member" % label)
    parts = jws.split(".")
    if len(parts) != 3:
        raise Tampered("%s: JWS is not compact serialization with three parts" % label)
    try:
        header_raw = b64url_decode(parts[0])
        payload = b64url_decode(parts[1])
        signature = b64url_decode(parts[2])
    except ValueError:
        raise Tampered("%s: JWS part is not base64url" % label)
    try:
        header = strict_json(header_raw)
    except (ValueError, RecursionError):
        raise Tampered("%s: JWS header is not valid JSON" % label)
    if not isinstance(header, dict):
        raise Tampered("%s: JWS header is not a JSON object" % label)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in JWS_ALGS:
        raise Tampered("%s: JWS alg %s not allowed (EdDSA or Ed25519 required)"
                       % (label, json.dumps(alg)))
    if "crit" in header:
        raise Tampered("%s: JWS crit header not supported" % label)
    if "typ" in header and header["typ"] != JWS_TYP:
        raise Tampered("%s: JWS typ %s is not %s" % (label, json.dumps(header["typ"]), JWS_TYP))
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise Tampered("%s: JWS header has no kid" % label)
    candidates = [x for (k, x) in keys if k == kid]
    if not candidates:
        raise Tampered("%s: JWS kid %s names no Ed25519 key in the JWKS" % (label, kid))
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    public_key = None
    for x in candidates:
        if ed25519_verify(x, signature, signing_input):
            public_key = x
            break
    if public_key is None:
        raise Tampered("%s: JWS signature does not verify with key %s" % (label, kid))
    try:
        body_text = payload.decode("utf-8")
        origin, size, root, root_b64 = parse_checkpoint_body(body_text)
    except ValueError as e:
        raise Tampered("%s: bad checkpoint body: %s" % (label, e))
    if expected_origin is not None and origin != expected_origin:
        raise Tampered("%s: origin %r differs from the expected origin %r"
                       % (label, origin, expected_origin))
    if "body" in cp and cp["body"] != body_text:
        raise Tampered("%s: \"body\" differs from the JWS payload" % label)
    if "note" in cp:
        verify_note(cp["note"], body_text, origin, public_key, label)
    if "origin" in cp and cp["origin"] != origin:
        raise Tampered("%s: \"origin\" member differs from the signed body" % label)
    if "tree_size" in cp and not (is_int(cp["tree_size"]) and cp["tree_size"] == size):
        raise Tampered("%s: \"tree_size\" member differs from the signed body" % label)
    if "root" in cp:
        member = cp["root"]
        same = member == root_b64
        if not same and isinstance(member, str):
            for dec in (b64std_decode, b64url_decode):
                try:
                    same = same or dec(member) == root
                except ValueError:
                    pass
        if not same:
            raise Tampered("%s: \"root\" member differs from the signed body" % label)
    c = Checkpoint()
    c.origin, c.size, c.root, c.root_b64, c.label = origin, size, root, root_b64, label
    return c


# --------------------------------------------------------------------------
# Entries
# --------------------------------------------------------------------------

class EntryChecker:
    """Streams NDJSON entry lines; keeps O(log n) tree state."""

    def __init__(self, origin, root_sizes):
        self.origin = origin
        self.root_sizes = set(root_sizes)
        self.roots = {}
        self.frontier = Frontier()
        if 0 in self.root_sizes:
            self.roots[0] = EMPTY_ROOT
        self.pos = 0
        self.prev_leaf = None
        self.ws = None
        self.failure = None  # (seq, reason)
        self.pending = {}  # erasure seq M -> [(seq, pointer)]
        self.verified = 0
        self.redacted = 0
        self.unexplained = 0

    def fail(self, seq, reason):
        if self.failure is None or seq < self.failure[0]:
            self.failure = (seq, reason)

    def add_line(self, raw):
        seq = self.pos
        self.pos += 1
        leaf = None
        try:
            leaf = self._check_line(seq, raw)
        except Tampered as t:
            self.fail(seq if t.seq is None else t.seq, t.reason)
        except Exception as e:  # anything odd in the content is tampering
            self.fail(seq, "malformed entry line: %s" % (e,))
        if leaf is None:
            leaf = sha256(b"\xffundecodable:" + raw)  # placeholder, failure already recorded
        for (s, ptr) in self.pending.pop(seq, []):
            # Entry seq could not be decoded, so it cannot explain the redaction.
            self.unexplained += 1
            self.fail(seq, "entry %d, claimed as the erasure of %s at seq %d, is malformed"
                           % (seq, ptr, s))
        self.frontier.add(leaf)
        if self.pos in self.root_sizes:
            self.roots[self.pos] = self.frontier.root()
        self.prev_leaf = leaf

    def _check_line(self, seq, raw):
        try:
            line = strict_json(raw, allow_floats=True)
        except (ValueError, RecursionError) as e:
            raise Tampered("entry line is not valid JSON: %s" % e)
        if not isinstance(line, dict):
            raise Tampered("entry line is not a JSON object")
        line_seq = line.get("seq")
        if not is_int(line_seq):
            raise Tampered("entry line has no integer seq")
        try:
            entry_bytes = b64url_decode(line.get("entry"))
        except ValueError:
            raise Tampered("entry line's \"entry\" is not base64url")
        leaf = leaf_hash(entry_bytes)
        try:
            self._check_entry(seq, line, line_seq, entry_bytes)
        except Tampered as t:
            self.fail(seq if t.seq is None else t.seq, t.reason)
        except Exception as e:
            self.fail(seq, "malformed entry: %s" % (e,))
        return leaf

    def _check_entry(self, seq, line, line_seq, entry_bytes):
        if len(entry_bytes) > MAX_ENTRY_BYTES:
            raise Tampered("entry is %d bytes, more than %d" % (len(entry_bytes), MAX_ENTRY_BYTES))
        try:
            entry = strict_json(entry_bytes)
        except (ValueError, RecursionError) as e:
            raise Tampered("entry bytes are not valid JSON: %s" % e)
        if not isinstance(entry, dict):
            raise Tampered("entry is not a JSON object")
        # Field and chain checks first (their failure is the one reported for this
        # seq), then personal values, which are checked even if a field is wrong.
        try:
            self._check_fields(seq, line_seq, entry)
        except Tampered as t:
            self.fail(seq, t.reason)
        if entry.get("action") == "privacy.erasure":
            self._resolve_erasure(seq, entry)
        else:
            # A redaction naming this (well-formed, non-erasure) entry is unexplained.
            for (s, ptr) in self.pending.pop(seq, []):
                self.unexplained += 1
                self.fail(s, "personal value %s claimed redacted by entry %d, which is not a "
                             "privacy.erasure entry" % (ptr, seq))
        pii = entry.get("pii", {})
        if isinstance(pii, dict):
            self._check_pii(seq, line, pii)

    def _check_fields(self, seq, line_seq, entry):
        if line_seq != seq:
            raise Tampered("expected seq %d, entry line has seq %d" % (seq, line_seq))
        if not (is_int(entry.get("v")) and entry["v"] == 1):
            raise Tampered("entry v is not 1")
        if not (is_int(entry.get("seq")) and entry["seq"] == seq):
            raise Tampered("entry seq %s, expected %d" % (json.dumps(entry.get("seq")), seq))
        ws = entry.get("ws")
        if not isinstance(ws, str):
            raise Tampered("entry has no ws")
        if self.ws is None:
            self.ws = ws
            if not (self.origin.endswith("/ws/" + ws)
                    or (ws == "instance" and self.origin.endswith("/instance"))):
                raise Tampered("workspace %r does not match origin %r" % (ws, self.origin))
        elif ws != self.ws:
            raise Tampered("entry ws %r differs from the log's ws %r" % (ws, self.ws))
        if seq == 0:
            if entry.get("prev") != genesis_prev(ws):
                raise Tampered("prev is not the genesis value")
        elif entry.get("prev") != b64url(self.prev_leaf):
            raise Tampered("prev does not match the leaf hash of entry %d" % (seq - 1))
        if entry.get("result") not in RESULTS:
            raise Tampered("result %s is not success, denied or error"
                           % json.dumps(entry.get("result")))
        pii = entry.get("pii", {})
        if not isinstance(pii, dict):
            raise Tampered("pii is not an object")
        for ptr, c in pii.items():
            if not isinstance(c, str):
                raise Tampered("pii commitment for %s is not a string" % ptr)
        gdpr = entry.get("gdpr", False)
        if not isinstance(gdpr, bool):
            raise Tampered("gdpr is not a boolean")
        if gdpr != bool(pii):
            raise Tampered("gdpr is %s but pii is %s"
                           % (json.dumps(gdpr), "non-empty" if pii else "empty"))

    def _check_pii(self, seq, line, pii):
        openings = line.get("pii", [])
        redacted = line.get("redacted", [])
        if openings is None:
            openings = []
        if redacted is None:
            redacted = []
        if not isinstance(openings, list) or not isinstance(redacted, list):
            raise Tampered("entry line's pii/redacted is not a list")
        opened = {}
        for o in openings:
            if not isinstance(o, dict) or not isinstance(o.get("pointer"), str) or "value" not in o:
                raise Tampered("malformed opening")
            ptr = o["pointer"]
            if ptr in opened:
                raise Tampered("two openings for %s" % ptr)
            if ptr not in pii:
                raise Tampered("opening for %s, which the entry does not commit to" % ptr)
            try:
                salt = b64url_decode(o.get("salt"))
            except ValueError:
                raise Tampered("opening for %s has a malformed salt" % ptr)
            if len(salt) != 32:
                raise Tampered("opening for %s has a salt of %d bytes, not 32" % (ptr, len(salt)))
            try:
                c = pii_commitment(salt, o["value"])
            except (ValueError, UnicodeError, RecursionError) as e:
                raise Tampered("opening for %s has a value that cannot be canonicalized: %s" % (ptr, e))
            if c != pii[ptr]:
                raise Tampered("opening for %s does not match its commitment" % ptr)
            opened[ptr] = True
        redactions = {}
        for r in redacted:
            if not isinstance(r, dict) or not isinstance(r.get("pointer"), str) or not is_int(r.get("by")):
                raise Tampered("malformed redaction")
            ptr = r["pointer"]
            if ptr not in pii:
                raise Tampered("redaction of %s, which the entry does not commit to" % ptr)
            if ptr in redactions:
                raise Tampered("two redactions for %s" % ptr)
            redactions[ptr] = r["by"]
        for ptr in pii:
            if ptr in opened:
                self.verified += 1
            elif ptr in redactions:
                by = redactions[ptr]
                if by <= seq:
                    self.unexplained += 1
                    self.fail(seq, "personal value %s claimed redacted by entry %d, which is not later in the log"
                              % (ptr, by))
                else:
                    self.pending.setdefault(by, []).append((seq, ptr))
            else:
                self.unexplained += 1
                self.fail(seq, "personal value %s has no opening and no erasure (unexplained)" % ptr)

    def _resolve_erasure(self, seq, entry):
        waiting = self.pending.pop(seq, [])
        erased = entry.get("erased", [])
        listed = set()
        bad = not isinstance(erased, list)
        if not bad:
            for e in erased:
                if isinstance(e, dict) and isinstance(e.get("pointer"), str) and is_int(e.get("seq")):
                    listed.add((e["seq"], e["pointer"]))
                else:
                    bad = True
        for (s, ptr) in waiting:
            if (s, ptr) in listed:
                self.redacted += 1
            else:
                self.unexplained += 1
                self.fail(s, "personal value %s claimed redacted by entry %d, which does not list it"
                          % (ptr, seq))
        if bad:
            raise Tampered("privacy.erasure entry has a malformed \"erased\" list")

    def finish(self):
        for by, items in self.pending.items():
            for (s, ptr) in items:
                self.unexplained += 1
                self.fail(s, "personal value %s claimed redacted by entry %d, which is not in the log"
                          % (ptr, by))
        self.pending = {}


def iter_lines(f):
    for raw in f:
        raw = raw.strip()
        if raw:
            yield raw


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

class Result:
    def __init__(self):
        self.status = "error"
        self.origin = None
        self.tree_size = None
        self.root = None
        self.entries = 0
        self.failure = None  # (seq|None, reason)
        self.verified = self.redacted = self.unexplained = 0

    def exit_code(self):
        return {"verified": EXIT_VERIFIED, "tampered": EXIT_TAMPERED}.get(self.status, EXIT_ERROR)

    def as_json(self):
        return {
            "status": self.status,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root": self.root,
            "entries": self.entries,
            "failure": None if self.failure is None
            else {"seq": self.failure[0], "reason": self.failure[1]},
            "pii": {"verified": self.verified, "redacted": self.redacted,
                    "unexplained": self.unexplained},
        }

    def human(self):
        if self.status == "verified":
            return "verified: %s, %d entries, checkpoint size %d, root %s" % (
                self.origin, self.entries, self.tree_size, self.root)
        if self.status == "tampered":
            seq, reason = self.failure
            if seq is None:
                return "TAMPERED: %s" % reason
            return "TAMPERED at seq %d: %s" % (seq, reason)
        return "error: %s" % (self.failure[1] if self.failure else "unknown error")


def run(args, res):
    keys, jwks_origin = load_jwks(args.jwks)
    main_cp = read_json_file(args.checkpoint, "checkpoint")
    trusted_cps = [(p, read_json_file(p, "trusted checkpoint")) for p in args.trusted_checkpoint]
    try:
        entries_file = open(args.entries, "rb")
    except OSError as e:
        raise UsageError("cannot read entries %s: %s" % (args.entries, e.strerror or e))

    with entries_file:
        # 1. Checkpoint authenticity (no single seq applies).
        try:
            cp = verify_checkpoint(main_cp, keys, jwks_origin, "checkpoint")
            res.origin, res.tree_size, res.root = cp.origin, cp.size, cp.root_b64
            trusted = [verify_checkpoint(obj, keys, cp.origin, "trusted checkpoint %s" % p)
                       for (p, obj) in trusted_cps]
        except Tampered as t:
            n = 0
            try:
                for _ in iter_lines(entries_file):
                    n += 1
            except OSError as e:
                raise UsageError("cannot read entries %s: %s" % (args.entries, e))
            res.entries = n
            res.status = "tampered"
            res.failure = (None, t.reason)
            return

        # 2. Stream the entries.
        checker = EntryChecker(cp.origin, [cp.size] + [t.size for t in trusted])
        try:
            for raw in iter_lines(entries_file):
                checker.add_line(raw)
        except OSError as e:
            raise UsageError("cannot read entries %s: %s" % (args.entries, e))
        checker.finish()

    n = checker.pos
    res.entries = n
    res.verified, res.redacted, res.unexplained = checker.verified, checker.redacted, checker.unexplained
    failure = checker.failure

    # 3. Sizes and roots.
    if failure is None:
        for c in [cp] + trusted:
            if c.size > n:
                failure = (None, "%s covers %d entries but the log has only %d (truncated)"
                           % (c.label, c.size, n))
            elif checker.roots.get(c.size) != c.root:
                failure = (None, "%s root %s does not match the root of the first %d entries (%s)"
                           % (c.label, c.root_b64, c.size, b64std(checker.roots[c.size])))
            if failure is not None:
                break

    if failure is None:
        res.status = "verified"
    else:
        res.status = "tampered"
        res.failure = failure


class _ArgParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    want_json = "--json" in argv
    res = Result()
    try:
        p = _ArgParser(
            prog="verify.py",
            description="Independent verifier for the Palisade audit log (AUDIT-SPEC v1).")
        p.add_argument("--jwks", required=True, metavar="FILE")
        p.add_argument("--checkpoint", required=True, metavar="FILE")
        p.add_argument("--entries", required=True, metavar="FILE")
        p.add_argument("--trusted-checkpoint", action="append", default=[], metavar="FILE")
        p.add_argument("--json", action="store_true")
        args = p.parse_args(argv)
        want_json = args.json
        run(args, res)
    except UsageError as e:
        res.status = "error"
        res.failure = (None, str(e))
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except BaseException as e:  # never a traceback
        res.status = "error"
        res.failure = (None, "internal error: %s: %s" % (type(e).__name__, e))
    if res.status == "error":
        res.origin = res.tree_size = res.root = None
    try:
        if want_json:
            sys.stdout.write(json.dumps(res.as_json()) + "\n")
        elif res.status == "error":
            sys.stderr.write(res.human() + "\n")
        else:
            sys.stdout.write(res.human() + "\n")
        sys.stdout.flush()
    except Exception:
        pass
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
