//! One end-to-end scenario, run unchanged on OpenLDAP (a per-test slapd) and on Active
//! Directory (the shared Samba AD DC), each with its shipped configuration
//! (`config/openldap.toml`, `config/active-directory.toml`) changed only in URL, CA and
//! credentials through the `common::Backend` overrides: check -> reconcile dry run (exit 2) ->
//! apply -> rerun (exit 0) -> mappings -> the redirector answers 302 with the right Contact for
//! every migrated URI and 404 for a decoy -> the audit log verifies.

use std::path::Path;
use std::time::Instant;

use crate::common::redirect::{Redirector, sipp_to};
use crate::common::samba::{self, Seed};
use crate::common::slapd::Slapd;
use crate::common::{Backend, output, pcsync_on};

/// A migrated well-known URI and the pool its endpoint must be homed on.
struct Migrated {
    uri: &'static str,
    pool: &'static str,
}

fn run(backend: &dyn Backend, work: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let assert = pcsync_on(backend, work).args(args).assert();
    let (out, err) = output(&assert);
    (assert.get_output().status.code(), out, err)
}

fn contact_of(message: &str) -> Option<&str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("Contact: "))
        .map(str::trim)
}

/// The scenario. `migrated` are the shipped configuration's migrations.
fn end_to_end(backend: &dyn Backend, migrated: &[Migrated]) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    let (code, out, err) = run(backend, w, &["check"]);
    assert_eq!(code, Some(0), "check: {out}{err}");

    // Dry run: a retire and a create per migration, exit 2, nothing written.
    let (code, out, err) = run(backend, w, &["reconcile", "--format", "json"]);
    assert_eq!(code, Some(2), "dry run: {out}{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2 * migrated.len(), "{out}");
    for m in migrated {
        let create = changes
            .iter()
            .find(|c| c["action"] == "create_endpoint" && c["sip_uri"] == m.uri)
            .unwrap_or_else(|| panic!("no create_endpoint for {}: {out}", m.uri));
        assert_eq!(create["pool"], m.pool, "{create}");
        assert!(
            changes
                .iter()
                .any(|c| c["action"] == "retire_user" && c["sip_uri"] == m.uri),
            "no retire_user for {}: {out}",
            m.uri
        );
    }

    // Apply, then the rerun has nothing to do.
    let (code, out, err) = run(backend, w, &["reconcile", "--apply"]);
    assert_eq!(code, Some(0), "apply: {out}{err}");
    let n = migrated.len();
    assert!(
        out.contains(&format!("applied {n} of {n} swap(s); 0 failed")),
        "{out}"
    );
    let (code, out, err) = run(backend, w, &["reconcile"]);
    assert_eq!(code, Some(0), "rerun: {out}{err}");
    assert!(out.contains("in sync: no changes"), "{out}");

    // The table built from the directory.
    let (code, out, err) = run(backend, w, &["mappings", "--format", "json"]);
    assert_eq!(code, Some(0), "mappings: {out}{err}");
    let table: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = table["entries"].as_array().unwrap();
    for m in migrated {
        let entry = entries
            .iter()
            .find(|e| e["sip_uri"] == m.uri)
            .unwrap_or_else(|| panic!("{} not mapped: {out}", m.uri));
        assert_eq!(entry["pool"], m.pool, "{entry}");
    }

    // The redirector serves it: 302 with the Contact on the pool, over UDP and TCP.
    let server = Redirector::start(backend, w);
    for m in migrated {
        let (user, domain) = m
            .uri
            .strip_prefix("sip:")
            .and_then(|a| a.split_once('@'))
            .unwrap();
        for transport in ["u1", "t1"] {
            let sip = sipp_to("invite_302.xml", server.addr, transport, user, domain, w);
            sip.assert_ok();
            let got = sip.received("SIP/2.0 302 Moved Temporarily");
            assert_eq!(got.len(), 1, "{}: {}", m.uri, sip.messages);
            let want = format!("<sip:{user}@{}:5061;transport=tls>", m.pool);
            assert_eq!(contact_of(&got[0]), Some(want.as_str()), "{}", got[0]);
        }
    }
    // A decoy shaped like a well-known user: a SIP user, not an endpoint.
    let sip = sipp_to(
        "invite_404.xml",
        server.addr,
        "u1",
        "ocschat.fan",
        "contoso.com",
        w,
    );
    sip.assert_ok();
    assert_eq!(sip.received("SIP/2.0 404 Not Found").len(), 1);

    // The audit log of the apply verifies.
    let (code, out, err) = run(backend, w, &["audit", "verify"]);
    assert_eq!(code, Some(0), "audit verify: {out}{err}");
    assert!(out.starts_with("OK: "), "{out}");
}

#[test]
fn end_to_end_on_openldap() {
    let started = Instant::now();
    let slapd = Slapd::start();
    end_to_end(
        &slapd,
        &[
            Migrated {
                uri: "sip:ocschat@contoso.com",
                pool: "pcpool1.contoso.com",
            },
            Migrated {
                uri: "sip:ocschat@fabrikam.com",
                pool: "pcpool2.contoso.com",
            },
        ],
    );
    eprintln!(
        "end to end on OpenLDAP: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn end_to_end_on_samba_ad() {
    let dc = samba::samba();
    let _seed = Seed::reset(&dc, &[]);
    let started = Instant::now();
    end_to_end(
        &*dc,
        &[Migrated {
            uri: "sip:ocschat@contoso.com",
            pool: "pcpool.contoso.com",
        }],
    );
    eprintln!(
        "end to end on Samba AD: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
