//! The binary as a user runs it: `openapi`, `config check`, and refusing unsafe PostgreSQL roles.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use palisade_store::testing::{postgres_base, postgres_database};

fn palisade() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PALISADE_")
            && !key.starts_with("PALISADE_TEST")
            && key != "PALISADE_REQUIRE_POSTGRES"
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn committed_openapi_json_matches_the_code() {
    let generated = palisade_api::openapi().to_pretty_json().unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json"))
            .unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi.json is stale: run `cargo run -q -p palisade -- openapi > openapi.json` and commit it"
    );
    let out = palisade().arg("openapi").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        generated.trim_end()
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn openapi_document_is_valid_openapi_3_1() {
    let python = match std::env::var("PALISADE_TEST_PYTHON") {
        Ok(p) => p,
        Err(_) if std::env::var("PALISADE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("PALISADE_TEST_PYTHON is set by scripts/test.sh")
        }
        Err(_) => return,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, palisade_api::openapi().to_pretty_json().unwrap()).unwrap();
    let out = Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("palisade.toml"), "admins = [\"ops@example.com\"]\ndatabase_url = \"postgres://app:hunter2-db@db.internal/p\"\n").unwrap();
    let out = palisade()
        .current_dir(dir.path())
        .env(
            "PALISADE_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .env("PALISADE_LISTEN", "127.0.0.1:9999")
        .args(["config", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("listen = \"127.0.0.1:9999\""),
        "env overrides the file: {text}"
    );
    assert!(text.contains("ops@example.com"), "{text}");
    assert!(
        !text.contains("hunter2-db") && !text.contains("AAECAwQF"),
        "secrets masked: {text}"
    );

    std::fs::write(
        dir.path().join("palisade.toml"),
        "listne = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = palisade()
        .current_dir(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listne"),
        "unknown keys are named"
    );
}

#[test]
fn serve_refuses_to_start_as_a_role_that_bypasses_rls() {
    if postgres_base().is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (var, expected) in [
        ("PALISADE_TEST_PG_BYPASS_URL", "BYPASSRLS"),
        ("PALISADE_TEST_PG_SUPERUSER_URL", "superuser"),
    ] {
        let base = std::env::var(var).unwrap();
        let url = rt.block_on(postgres_database(&base));
        let dir = tempfile::tempdir().unwrap();
        let out = palisade()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &url,
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: must not start");
        assert!(
            stderr.contains("refusing to run") && stderr.contains(expected),
            "{var}: {stderr}"
        );
        assert!(!stderr.contains("password"), "{stderr}");
    }
}
