"""Self-tests for the reference audit-log verifier (verify.py).

Run from /work/main:
    python3 -m unittest discover -s tests/verifier -p 'test_*.py'
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import unittest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFY = os.path.join(HERE, "verify.py")
sys.path.insert(0, HERE)
import verify  # noqa: E402


# ---------------------------------------------------------------------------
# Independent helpers for the generator (deliberately not reusing verify.py)
# ---------------------------------------------------------------------------

def u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ud(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def h(data):
    return hashlib.sha256(data).digest()


def canon(obj):
    # RFC 8785 for the ASCII-keyed, integer/string-only objects the generator builds.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def mth(leaves):
    """Straightforward recursive RFC 6962 Merkle tree hash over leaf *hashes*."""
    n = len(leaves)
    if n == 0:
        return h(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def leaf_of(entry_bytes):
    return h(b"\x00" + entry_bytes)


def pub_bytes(key):
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def kid_of(key):
    x = u(pub_bytes(key))
    return u(h(('{"crv":"Ed25519","kty":"OKP","x":"%s"}' % x).encode()))


def jwks_of(key, origin):
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": u(pub_bytes(key)), "kid": kid_of(key),
                      "use": "sig", "alg": "EdDSA"}],
            "audit_log": {"origin": origin, "daily": [], "min_index": 0}}


def sign_jws(key, payload, header=None):
    if header is None:
        header = {"alg": "EdDSA", "kid": kid_of(key), "typ": "tlog-checkpoint+jws"}
    h64 = u(json.dumps(header, separators=(",", ":")).encode())
    p64 = u(payload)
    sig = key.sign((h64 + "." + p64).encode())
    return h64 + "." + p64 + "." + u(sig)


def sign_note(key, origin, body):
    key_id = h(origin.encode() + b"\n\x01" + pub_bytes(key))[:4]
    sig = key.sign(body.encode())
    return body + "\n\u2014 " + origin + " " + base64.b64encode(key_id + sig).decode() + "\n"


def make_checkpoint(key, origin, entries, size=None):
    size = len(entries) if size is None else size
    root = mth([leaf_of(e) for e in entries[:size]])
    body = "%s\n%d\n%s\n" % (origin, size, base64.b64encode(root).decode())
    return {"origin": origin, "tree_size": size, "root": base64.b64encode(root).decode(),
            "body": body, "jws": sign_jws(key, body.encode()), "note": sign_note(key, origin, body)}


def commitment(salt, value):
    return u(h(b"audit-pii/v1\x00" + salt + canon(value)))


WS = "ws_test"
ORIGIN = "audit.example.com/ws/ws_test"


def generate_log(n=20, ws=WS, erase=(), tweak=None):
    """Returns a list of NDJSON line dicts (with the exact entry bytes in 'entry').

    erase: [(seq, pointer)] -> opening dropped, redaction recorded, and a
    privacy.erasure entry appended that lists them.
    """
    actions = ["record.update", "user.invite", "auth.sign_in_failed", "member.role_change"]
    lines = []
    prev = u(h(b"audit-log/v1 genesis\n" + ws.encode()))
    total = n + (1 if erase else 0)
    for seq in range(total):
        pii, openings = {}, []
        if seq < n and seq % 3 == 1:
            values = {"/ip": "203.0.113.%d" % seq}
            if seq % 2:
                values["/user_agent"] = "Mozilla/5.0 \"quoted\" \u00e9\n\u2603"
            if seq == 7:
                values["/data/profile"] = {"name": "Zo\u00eb", "age": 41, "tags": ["a", "b"], "x": None}
            for ptr, value in values.items():
                salt = h(b"salt/%d/%s" % (seq, ptr.encode()))
                pii[ptr] = commitment(salt, value)
                openings.append({"pointer": ptr, "salt": u(salt), "value": value})
        entry = {"v": 1, "ws": ws, "seq": seq, "prev": prev,
                 "ts": "2026-11-20T10:00:%02d.000000Z" % (seq % 60),
                 "action": actions[seq % len(actions)], "result": "success",
                 "actor": {"type": "user", "id": "usr_%d" % (seq % 4)},
                 "target": {"type": "record", "id": "obj_%d" % seq},
                 "request_id": "req_%d" % seq, "diff": {"/status": ["open", "closed"]},
                 "pii": pii, "gdpr": bool(pii)}
        if seq == n:  # erasure entry
            entry.update(action="privacy.erasure", target={"type": "subject", "id": "sub_1"},
                         diff={}, erased=[{"pointer": p, "seq": s} for (s, p) in erase])
        if tweak:
            tweak(entry)
        b = canon(entry)
        lines.append({"seq": seq, "entry": u(b), "pii": openings, "redacted": []})
        prev = u(leaf_of(b))
    for (s, p) in erase:
        lines[s]["pii"] = [o for o in lines[s]["pii"] if o["pointer"] != p]
        lines[s]["redacted"].append({"pointer": p, "by": n})
    return lines


def entry_bytes(lines):
    return [ud(l["entry"]) for l in lines]


# ---------------------------------------------------------------------------

class CliCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.key = Ed25519PrivateKey.from_private_bytes(h(b"test key 1"))
        self.lines = generate_log()
        self.cp = make_checkpoint(self.key, ORIGIN, entry_bytes(self.lines))

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def write(self, name, obj):
        with open(self.path(name), "w", encoding="utf-8") as f:
            if isinstance(obj, str):
                f.write(obj)
            else:
                json.dump(obj, f)
        return self.path(name)

    def write_lines(self, lines, name="entries.ndjson"):
        return self.write(name, "".join(json.dumps(l) + "\n" for l in lines))

    def run_verify(self, lines=None, cp=None, jwks=None, trusted=(), extra=(), json_out=True):
        jwks_p = self.write("jwks.json", jwks if jwks is not None else jwks_of(self.key, ORIGIN))
        cp_p = self.write("checkpoint.json", cp if cp is not None else self.cp)
        ent_p = self.write_lines(lines if lines is not None else self.lines)
        args = [sys.executable, VERIFY, "--jwks", jwks_p, "--checkpoint", cp_p, "--entries", ent_p]
        for i, t in enumerate(trusted):
            args += ["--trusted-checkpoint", self.write("trusted%d.json" % i, t)]
        args += list(extra)
        if json_out:
            args.append("--json")
        p = subprocess.run(args, capture_output=True, text=True, timeout=120)
        self.assertNotIn("Traceback", p.stderr + p.stdout)
        out = json.loads(p.stdout) if json_out else p.stdout
        return p.returncode, out

    def assertTampered(self, **kw):
        rc, out = self.run_verify(**kw)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["status"], "tampered")
        self.assertIsInstance(out["failure"]["reason"], str)
        return out


class TestValid(CliCase):
    def test_valid_log_json(self):
        rc, out = self.run_verify()
        self.assertEqual(rc, 0, out)
        root = base64.b64encode(mth([leaf_of(e) for e in entry_bytes(self.lines)])).decode()
        opened = sum(len(l["pii"]) for l in self.lines)
        self.assertEqual(out, {"status": "verified", "origin": ORIGIN, "tree_size": 20, "root": root,
                               "entries": 20, "failure": None,
                               "pii": {"verified": opened, "redacted": 0, "unexplained": 0}})

    def test_valid_log_human(self):
        rc, out = self.run_verify(json_out=False)
        self.assertEqual(rc, 0)
        self.assertEqual(out, "verified: %s, 20 entries, checkpoint size 20, root %s\n"
                         % (ORIGIN, self.cp["root"]))

    def test_entries_beyond_checkpoint_and_trusted_older(self):
        eb = entry_bytes(self.lines)
        cp = make_checkpoint(self.key, ORIGIN, eb, 17)
        older = [make_checkpoint(self.key, ORIGIN, eb, s) for s in (0, 1, 5, 16)]
        rc, out = self.run_verify(cp=cp, trusted=older)
        self.assertEqual(rc, 0, out)
        self.assertEqual((out["entries"], out["tree_size"]), (20, 17))

    def test_blank_lines_and_padding_accepted(self):
        lines = [dict(l, entry=base64.urlsafe_b64encode(ud(l["entry"])).decode()) for l in self.lines]
        text = "\n".join(json.dumps(l) for l in lines) + "\n\n  \n"
        jwks_p = self.write("jwks.json", jwks_of(self.key, ORIGIN))
        p = subprocess.run([sys.executable, VERIFY, "--jwks", jwks_p, "--checkpoint",
                            self.write("cp.json", self.cp), "--entries", self.write("e.ndjson", text)],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_erasure_explains_removed_opening(self):
        lines = generate_log(erase=[(4, "/ip")])
        cp = make_checkpoint(self.key, ORIGIN, entry_bytes(lines))
        rc, out = self.run_verify(lines=lines, cp=cp)
        self.assertEqual(rc, 0, out)
        self.assertEqual(out["pii"]["redacted"], 1)
        self.assertEqual(out["pii"]["unexplained"], 0)
        self.assertEqual(out["entries"], 21)

    def test_instance_origin(self):
        lines = generate_log(ws="instance")
        cp = make_checkpoint(self.key, "audit.example.com/instance", entry_bytes(lines))
        rc, out = self.run_verify(lines=lines, cp=cp, jwks=jwks_of(self.key, "audit.example.com/instance"))
        self.assertEqual(rc, 0, out)

    def test_ignores_jku_and_other_keys(self):
        other = Ed25519PrivateKey.from_private_bytes(h(b"other"))
        jwks = jwks_of(self.key, ORIGIN)
        jwks["keys"].insert(0, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "ec"})
        jwks["keys"].append(jwks_of(other, ORIGIN)["keys"][0])
        body = self.cp["body"].encode()
        jws = sign_jws(self.key, body, {"alg": "EdDSA", "kid": kid_of(self.key), "typ": "tlog-checkpoint+jws",
                                        "jku": "https://evil.example/jwks.json",
                                        "jwk": jwks_of(other, ORIGIN)["keys"][0]})
        rc, out = self.run_verify(jwks=jwks, cp={"jws": jws})
        self.assertEqual(rc, 0, out)


class TestTampering(CliCase):
    def test_entry_bytes_modified(self):
        lines = [dict(l) for l in self.lines]
        b = ud(lines[5]["entry"]).replace(b'"result":"success"', b'"result":"denied"')
        self.assertNotEqual(b, ud(lines[5]["entry"]))
        lines[5]["entry"] = u(b)
        out = self.assertTampered(lines=lines)
        self.assertEqual(out["failure"]["seq"], 6)

    def test_last_entry_modified(self):
        lines = [dict(l) for l in self.lines]
        lines[19]["entry"] = u(ud(lines[19]["entry"]).replace(b"usr_", b"usr9"))
        out = self.assertTampered(lines=lines)
        self.assertIsNone(out["failure"]["seq"])
        self.assertIn("root", out["failure"]["reason"])

    def test_entry_deleted(self):
        out = self.assertTampered(lines=self.lines[:8] + self.lines[9:])
        self.assertEqual(out["failure"]["seq"], 8)

    def test_entry_inserted(self):
        extra = dict(self.lines[3])
        out = self.assertTampered(lines=self.lines[:4] + [extra] + self.lines[4:])
        self.assertEqual(out["failure"]["seq"], 4)

    def test_entries_reordered(self):
        lines = list(self.lines)
        lines[10], lines[11] = lines[11], lines[10]
        out = self.assertTampered(lines=lines)
        self.assertEqual(out["failure"]["seq"], 10)

    def test_truncated_below_checkpoint(self):
        out = self.assertTampered(lines=self.lines[:15])
        self.assertIn("truncated", out["failure"]["reason"])

    def test_truncated_and_recheckpointed_with_trusted(self):
        short = self.lines[:15]
        cp15 = make_checkpoint(self.key, ORIGIN, entry_bytes(short))
        rc, out = self.run_verify(lines=short, cp=cp15)
        self.assertEqual(rc, 0, out)  # looks fine on its own ...
        out = self.assertTampered(lines=short, cp=cp15, trusted=[self.cp])  # ... but not vs. the archive
        self.assertIn("truncated", out["failure"]["reason"])

    def test_fork_detected_by_trusted(self):
        old = make_checkpoint(self.key, ORIGIN, entry_bytes(self.lines), 10)
        forked = generate_log(tweak=lambda e: e.update(ts=e["ts"].replace("10:00", "11:00")))
        cp = make_checkpoint(self.key, ORIGIN, entry_bytes(forked))
        self.assertTampered(lines=forked, cp=cp, trusted=[old])

    def test_whole_log_replaced_and_resigned(self):
        evil = Ed25519PrivateKey.from_private_bytes(h(b"attacker key"))
        forged = generate_log(tweak=lambda e: e.update(result="denied"))
        cp = make_checkpoint(evil, ORIGIN, entry_bytes(forged))
        # With the attacker's JWKS the new checkpoint verifies, but the archived one does not.
        rc, out = self.run_verify(lines=forged, cp=cp, jwks=jwks_of(evil, ORIGIN))
        self.assertEqual(rc, 0, out)
        out = self.assertTampered(lines=forged, cp=cp, jwks=jwks_of(evil, ORIGIN), trusted=[self.cp])
        self.assertIsNone(out["failure"]["seq"])
        # With the genuine JWKS the forged checkpoint itself fails.
        self.assertTampered(lines=forged, cp=cp)

    def test_alg_none(self):
        h64 = u(json.dumps({"alg": "none", "kid": kid_of(self.key), "typ": "tlog-checkpoint+jws"}).encode())
        good = self.cp["jws"].split(".")
        for sig in ("", good[2]):
            out = self.assertTampered(cp={"jws": h64 + "." + good[1] + "." + sig})
            self.assertIsNone(out["failure"]["seq"])
            self.assertIsNone(out["origin"])

    def test_alg_hs256(self):
        h64 = u(json.dumps({"alg": "HS256", "kid": kid_of(self.key), "typ": "tlog-checkpoint+jws"}).encode())
        p64 = self.cp["jws"].split(".")[1]
        for secret in (pub_bytes(self.key), u(pub_bytes(self.key)).encode()):
            mac = hmac.new(secret, (h64 + "." + p64).encode(), hashlib.sha256).digest()
            self.assertTampered(cp={"jws": h64 + "." + p64 + "." + u(mac)})

    def test_alg_missing_and_bad_typ(self):
        p64 = self.cp["jws"].split(".")[1]
        self.assertTampered(cp={"jws": sign_jws(self.key, self.cp["body"].encode(), {"kid": kid_of(self.key)})})
        self.assertTampered(cp={"jws": sign_jws(self.key, self.cp["body"].encode(),
                                                {"alg": "EdDSA", "kid": kid_of(self.key), "typ": "JWT"})})
        self.assertTampered(cp={"jws": sign_jws(self.key, self.cp["body"].encode(),
                                                {"alg": "EdDSA", "kid": "nope"})})
        self.assertTampered(cp={"jws": self.cp["jws"] + "x"})
        self.assertTampered(cp={"jws": "a.b"})
        self.assertTampered(cp={"jws": p64})

    def test_checkpoint_members_disagree(self):
        for k, v in (("body", self.cp["body"].replace("\n20\n", "\n21\n")), ("tree_size", 19),
                     ("origin", "audit.example.com/ws/other"), ("root", base64.b64encode(b"\0" * 32).decode()),
                     ("note", self.cp["note"].replace("\n20\n", "\n21\n")),
                     ("note", self.cp["note"][:-10] + "AAAAAAAAA\n")):
            self.assertTampered(cp=dict(self.cp, **{k: v}))

    def test_checkpoint_body_extension_line_or_wrong_origin(self):
        body = self.cp["body"] + "extension\n"
        self.assertTampered(cp={"jws": sign_jws(self.key, body.encode())})
        other = make_checkpoint(self.key, "audit.example.com/ws/ws_other", entry_bytes(self.lines))
        self.assertTampered(cp=other)  # JWKS audit_log.origin differs
        jwks = jwks_of(self.key, "audit.example.com/ws/ws_other")
        out = self.assertTampered(cp=other, jwks=jwks)  # origin does not end in /ws/ws_test
        self.assertEqual(out["failure"]["seq"], 0)

    def test_opening_value_altered(self):
        lines = [json.loads(json.dumps(l)) for l in self.lines]
        lines[7]["pii"][0]["value"] = "198.51.100.1"
        out = self.assertTampered(lines=lines)
        self.assertEqual(out["failure"]["seq"], 7)

    def test_opening_removed_without_erasure(self):
        lines = [json.loads(json.dumps(l)) for l in self.lines]
        lines[4]["pii"] = []
        out = self.assertTampered(lines=lines)
        self.assertEqual(out["failure"]["seq"], 4)
        self.assertGreaterEqual(out["pii"]["unexplained"], 1)

    def test_redaction_not_listed_by_erasure(self):
        lines = generate_log(erase=[(4, "/ip")])
        lines[10]["redacted"] = [{"pointer": "/ip", "by": 20}]
        lines[10]["pii"] = [o for o in lines[10]["pii"] if o["pointer"] != "/ip"]
        cp = make_checkpoint(self.key, ORIGIN, entry_bytes(lines))
        out = self.assertTampered(lines=lines, cp=cp)
        self.assertEqual(out["failure"]["seq"], 10)
        self.assertEqual(out["pii"]["redacted"], 1)
        self.assertEqual(out["pii"]["unexplained"], 1)

    def test_redaction_by_missing_or_non_erasure_entry(self):
        for by in (50, 12, 3):
            lines = [json.loads(json.dumps(l)) for l in self.lines]
            lines[4]["pii"] = []
            lines[4]["redacted"] = [{"pointer": "/ip", "by": by}]
            out = self.assertTampered(lines=lines)
            self.assertEqual(out["failure"]["seq"], 4)

    def test_opening_for_absent_pointer(self):
        lines = [json.loads(json.dumps(l)) for l in self.lines]
        lines[2]["pii"] = [dict(lines[1]["pii"][0])]
        out = self.assertTampered(lines=lines)
        self.assertEqual(out["failure"]["seq"], 2)

    def test_entry_content_rules(self):
        cases = {
            "gdpr": lambda e: e.update(gdpr=not e["gdpr"]),
            "result": lambda e: e.update(result="ok") if e["seq"] == 3 else None,
            "v": lambda e: e.update(v=2) if e["seq"] == 3 else None,
            "ws": lambda e: e.update(ws="ws_other") if e["seq"] == 3 else None,
            "float": lambda e: e.update(n=1.5) if e["seq"] == 3 else None,
            "big": lambda e: e.update(blob="x" * 70000) if e["seq"] == 3 else None,
        }
        for name, tweak in cases.items():
            with self.subTest(name):
                lines = generate_log(tweak=tweak)
                cp = make_checkpoint(self.key, ORIGIN, entry_bytes(lines))
                self.assertTampered(lines=lines, cp=cp)

    def test_garbage_line(self):
        lines = [json.dumps(l) for l in self.lines]
        lines[6] = "{not json"
        ent = self.write("entries.ndjson", "\n".join(lines) + "\n")
        p = subprocess.run([sys.executable, VERIFY, "--jwks", self.write("jwks.json", jwks_of(self.key, ORIGIN)),
                            "--checkpoint", self.write("checkpoint.json", self.cp), "--entries", ent],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stdout.startswith("TAMPERED at seq 6: "), p.stdout)
        self.assertEqual(p.stderr, "")


class TestErrors(CliCase):
    def test_missing_file(self):
        rc, out = self.run_verify(extra=["--trusted-checkpoint", self.path("nope.json")])
        self.assertEqual(rc, 2)
        self.assertEqual(out["status"], "error")
        p = subprocess.run([sys.executable, VERIFY, "--jwks", self.path("nope"), "--checkpoint",
                            self.path("nope"), "--entries", self.path("nope")], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stdout, "")
        self.assertNotIn("Traceback", p.stderr)

    def test_unparsable_jwks_and_checkpoint(self):
        self.assertEqual(self.run_verify(jwks="{oops")[0], 2)
        self.assertEqual(self.run_verify(cp="[1,")[0], 2)
        self.assertEqual(self.run_verify(jwks="[]")[0], 2)

    def test_bad_arguments(self):
        for args in ([], ["--jwks"], ["--bogus", "--json"]):
            p = subprocess.run([sys.executable, VERIFY] + args, capture_output=True, text=True)
            self.assertEqual(p.returncode, 2, args)
            self.assertNotIn("Traceback", p.stderr + p.stdout)
        p = subprocess.run([sys.executable, VERIFY, "--json"], capture_output=True, text=True)
        self.assertEqual(json.loads(p.stdout)["status"], "error")


# ---------------------------------------------------------------------------
# Units: Merkle, JCS, AUDIT-SPEC §10 vectors
# ---------------------------------------------------------------------------

class TestMerkle(unittest.TestCase):
    def test_streaming_root_matches_recursive_mth(self):
        leaves = [leaf_of(b"entry %d" % i) for i in range(70)]
        f = verify.Frontier()
        self.assertEqual(f.root(), mth([]))
        self.assertEqual(f.root(), hashlib.sha256(b"").digest())
        for n in range(1, 71):
            f.add(leaves[n - 1])
            self.assertEqual(f.root(), mth(leaves[:n]), n)
            self.assertEqual(len(f.stack), bin(n).count("1"))


class TestJcs(unittest.TestCase):
    def test_jcs(self):
        j = verify.jcs_text
        self.assertEqual(j("203.0.113.7"), '"203.0.113.7"')
        self.assertEqual(j("a\"\\\b\f\n\r\t\x01\x1f\x7f\u00e9\u2028"),
                         '"a\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\u00e9\u2028"')
        self.assertEqual(j({"b": [1, True, None], "a": {"\u00e9": -5, "z": "x"}, "\U0001f600": 0, "\ufb01": 1}),
                         '{"a":{"z":"x","\u00e9":-5},"b":[1,true,null],"\U0001f600":0,"\ufb01":1}')
        from decimal import Decimal
        self.assertEqual(j(Decimal("4.0")), "4")
        self.assertEqual(j(Decimal("-0.0")), "0")
        for bad in (Decimal("1.5"), 1.5, Decimal("1e400"), float("nan")):
            with self.assertRaises(ValueError):
                j(bad)
        with self.assertRaises(UnicodeError):
            verify.jcs("\ud800")


class TestVectors(unittest.TestCase):
    D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
    X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    GENESIS = "OGj4kKx0Nixp2iOWMMsVtJiXcWLD-JVxAEw9TCo7iI4"
    COMMIT = "bKW654h1CDiVMHfzkGBPaIr-fOZwKsBneb3T4f8k8KE"
    ENTRIES = [
        b'{"action":"workspace.create","actor":{"id":"usr_1","type":"user"},"diff":{},"gdpr":false,"pii":{},"prev":"OGj4kKx0Nixp2iOWMMsVtJiXcWLD-JVxAEw9TCo7iI4","result":"success","seq":0,"target":{"id":"obj_0","type":"workspace"},"ts":"2026-11-20T10:00:00.000000Z","v":1,"ws":"ws_test"}',
        b'{"action":"user.invite","actor":{"id":"usr_1","type":"user"},"diff":{},"gdpr":true,"pii":{"/ip":"bKW654h1CDiVMHfzkGBPaIr-fOZwKsBneb3T4f8k8KE"},"prev":"MwcdfO5NSm9Te6o3YlLQLPJWJ2VTkmaHTQR5m7rfG6U","result":"success","seq":1,"target":{"id":"obj_1","type":"user"},"ts":"2026-11-20T10:00:01.000000Z","v":1,"ws":"ws_test"}',
        b'{"action":"document.delete","actor":{"id":"usr_1","type":"user"},"diff":{},"gdpr":false,"pii":{},"prev":"PNSngG0D61dVrxE20tVcb7W6V7XwL6iyKxALZSgpNz0","result":"success","seq":2,"target":{"id":"obj_2","type":"document"},"ts":"2026-11-20T10:00:02.000000Z","v":1,"ws":"ws_test"}',
    ]
    LEAVES = ["33071d7cee4d4a6f537baa376252d02cf2562765539266874d04799bbadf1ba5",
              "3cd4a7806d03eb5755af1136d2d55c6fb5ba57b5f02fa8b22b100b652829373d",
              "8897b4f69697296b31c547823d51e6434c6356d24d31256d9b65fdd24e3ee2d9"]
    ROOT = "06e6dee25936e82dc52fb1ea6cbf2cabc370fc97360411c795c00f0a2a4aa426"
    BODY = "audit.example.com/ws/ws_test\n3\nBube4lk26C3FL7HqbL8sq8Nw/Jc2BBHHlcAPCipKpCY=\n"
    JWS = ("eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiLCJ0eXAiOiJ0bG9nLWNoZWNrcG9pbnQrandzIn0"
           ".YXVkaXQuZXhhbXBsZS5jb20vd3Mvd3NfdGVzdAozCkJ1YmU0bGsyNkMzRkw3SHFiTDhzcThOdy9KYzJCQkhIbGNBUENpcEtwQ1k9Cg"
           ".S_7Ev00igHo1tENoh4t_Wbo34N8xlKjHoPoXNNK3nG298UGZ2HCn7xfsvV3wHvSFRPPKvxTfZ_HlVkRAXvgHBQ")
    VKEY = "audit.example.com/ws/ws_test+3b5b7139+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"
    SIGLINE = ("\u2014 audit.example.com/ws/ws_test "
               "O1txOdue6IDJ1t+6xwiyFNGWoYJpM5UNL3N7DWa/wfN4Mb+UnJrXQ3U0yx3JkYs06+IMebXEWhtMsbShNbhJWWhPCgs=")
    JWK = {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": KID, "use": "sig", "alg": "EdDSA"}

    def setUp(self):
        self.key = Ed25519PrivateKey.from_private_bytes(ud(self.D))
        self.pub = ud(self.X)

    def test_key_and_thumbprint(self):
        self.assertEqual(pub_bytes(self.key), self.pub)
        self.assertEqual(verify.jwk_thumbprint(self.X), self.KID)

    def test_genesis_and_commitment(self):
        self.assertEqual(verify.genesis_prev("ws_test"), self.GENESIS)
        self.assertEqual(verify.pii_commitment(bytes(range(32)), "203.0.113.7"), self.COMMIT)

    def test_entries_leaves_root_body(self):
        leaves = [verify.leaf_hash(e) for e in self.ENTRIES]
        self.assertEqual([l.hex() for l in leaves], self.LEAVES)
        self.assertEqual(verify.b64url(leaves[0]), json.loads(self.ENTRIES[1])["prev"])
        self.assertEqual(verify.b64url(leaves[1]), json.loads(self.ENTRIES[2])["prev"])
        f = verify.Frontier()
        for l in leaves:
            f.add(l)
        self.assertEqual(f.root().hex(), self.ROOT)
        self.assertEqual(verify.parse_checkpoint_body(self.BODY),
                         ("audit.example.com/ws/ws_test", 3, bytes.fromhex(self.ROOT),
                          "Bube4lk26C3FL7HqbL8sq8Nw/Jc2BBHHlcAPCipKpCY="))

    def test_jws_and_note(self):
        note = self.BODY + "\n" + self.SIGLINE + "\n"
        cp = verify.verify_checkpoint({"jws": self.JWS, "body": self.BODY, "note": note, "tree_size": 3},
                                      [(self.KID, self.pub)], "audit.example.com/ws/ws_test", "cp")
        self.assertEqual((cp.origin, cp.size, cp.root.hex()), ("audit.example.com/ws/ws_test", 3, self.ROOT))
        # Deterministic Ed25519: reproduce both signatures.
        self.assertEqual(sign_jws(self.key, self.BODY.encode()), self.JWS)
        self.assertEqual(sign_note(self.key, "audit.example.com/ws/ws_test", self.BODY), note)
        self.assertEqual(verify.note_vkey("audit.example.com/ws/ws_test", self.pub), self.VKEY)
        with self.assertRaises(verify.Tampered):
            verify.verify_checkpoint({"jws": self.JWS, "note": note.replace("O1tx", "O1ty")},
                                     [(self.KID, self.pub)], None, "cp")

    def test_vector_log_via_cli(self):
        with tempfile.TemporaryDirectory() as d:
            def w(name, text):
                p = os.path.join(d, name)
                with open(p, "w", encoding="utf-8") as f:
                    f.write(text)
                return p
            lines = [{"seq": i, "entry": u(e), "pii": [], "redacted": []} for i, e in enumerate(self.ENTRIES)]
            lines[1]["pii"] = [{"pointer": "/ip", "salt": u(bytes(range(32))), "value": "203.0.113.7"}]
            args = [sys.executable, VERIFY,
                    "--jwks", w("jwks.json", json.dumps({"keys": [self.JWK], "audit_log": {
                        "origin": "audit.example.com/ws/ws_test", "daily": [], "min_index": 0}})),
                    "--checkpoint", w("cp.json", json.dumps({"body": self.BODY, "jws": self.JWS,
                                                             "note": self.BODY + "\n" + self.SIGLINE + "\n"})),
                    "--entries", w("e.ndjson", "".join(json.dumps(l) + "\n" for l in lines)), "--json"]
            p = subprocess.run(args, capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            out = json.loads(p.stdout)
            self.assertEqual(out["root"], "Bube4lk26C3FL7HqbL8sq8Nw/Jc2BBHHlcAPCipKpCY=")
            self.assertEqual(out["pii"], {"verified": 1, "redacted": 0, "unexplained": 0})


class TestEd25519Strict(unittest.TestCase):
    def test_small_order_key_rejected(self):
        identity = (1).to_bytes(32, "little")
        # A = identity, R = identity, S = 0 satisfies the cofactorless equation for any message.
        self.assertFalse(verify.ed25519_verify(identity, identity + bytes(32), b"msg"))
        key = Ed25519PrivateKey.from_private_bytes(h(b"k"))
        sig = key.sign(b"msg")
        self.assertTrue(verify.ed25519_verify(pub_bytes(key), sig, b"msg"))
        s = int.from_bytes(sig[32:], "little") + verify._L
        self.assertFalse(verify.ed25519_verify(pub_bytes(key), sig[:32] + s.to_bytes(32, "little"), b"msg"))


if __name__ == "__main__":
    unittest.main()
