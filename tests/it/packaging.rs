//! Packaging that cannot run here (no container engine): the compose file parses and everything
//! it and the Dockerfile reference exists; the systemd unit passes `systemd-analyze verify`.

use std::fs;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use crate::common::repo;

fn compose() -> Yaml {
    let text = fs::read_to_string(repo("docker-compose.yml")).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).expect("docker-compose.yml is not valid YAML");
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_vec()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn compose_parses_and_its_files_exist() {
    let doc = compose();
    let services = &doc["services"];
    let openldap = &services["openldap"];
    let pcsync = &services["pcsync"];
    assert!(openldap["image"].as_str().unwrap().contains("openldap"));
    // Every bind-mounted host path exists.
    for service in [openldap, pcsync] {
        for volume in strings(&service["volumes"]) {
            let host = volume.split(':').next().unwrap();
            if host.starts_with("./") {
                assert!(repo(host).exists(), "{host} (in {volume}) does not exist");
            }
        }
    }
    // pcsync is built from the repo's Dockerfile and runs the agent.
    assert_eq!(pcsync["build"].as_str(), Some("."));
    assert!(repo("Dockerfile").exists());
    let command = strings(&pcsync["command"]);
    assert_eq!(
        command.last().map(String::as_str),
        Some("run"),
        "{command:?}"
    );
    // Its PCSYNC__ variables are keys config/pcsync.example.toml documents.
    let example = fs::read_to_string(repo("config/pcsync.example.toml")).unwrap();
    for (key, _) in pcsync["environment"].as_hash().unwrap() {
        let var = key.as_str().unwrap();
        let leaf = var.rsplit("__").next().unwrap().to_ascii_lowercase();
        assert!(
            example.contains(&format!("{leaf} =")) || example.contains(&format!("# {leaf} =")),
            "{var} sets a key the example config does not document"
        );
    }
    // The redirector and HTTP ports are published.
    let ports = strings(&pcsync["ports"]).join(" ");
    for port in ["5060/udp", "5060/tcp", "9560/tcp"] {
        assert!(ports.contains(port), "{port} not published: {ports}");
    }
    assert!(
        doc["secrets"]["ldap_admin_password"]["file"]
            .as_str()
            .is_some()
    );
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_copies_what_exists() {
    let text = fs::read_to_string(repo("Dockerfile")).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "not multi-stage");
    assert!(
        text.lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root"))
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                repo(src).exists(),
                "Dockerfile copies {src}, which does not exist"
            );
        }
    }
    // The container's default command is one pcsync accepts.
    let cmd = text.lines().find(|l| l.starts_with("CMD ")).unwrap();
    assert!(cmd.contains("\"run\""), "{cmd}");
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = fs::read_to_string(repo("packaging/pcsync.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    assert!(
        exec.starts_with("/usr/local/bin/pcsync ") && exec.ends_with(" run"),
        "{exec}"
    );
    // Verify a copy that points at the built binary (the installed path does not exist here)
    // and drops the man page reference (not installed either).
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("pcsync");
    let copy = unit
        .replace("/usr/local/bin/pcsync", bin.to_str().unwrap())
        .lines()
        .filter(|l| !l.starts_with("Documentation="))
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join("pcsync.service");
    fs::write(&path, copy).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is needed: apt-get install systemd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
