//! The executor against an in-memory directory: journal order, conditional writes, rollback,
//! and recovery of every crash point, with no server.

use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;

use super::swap::{SwapFault, verify};
use super::*;
use crate::audit::{Event, Note, Outcome, Step};
use crate::model::Attributes;
use crate::plan::{CreateEndpoint, RetireUser, Status};

/// An in-memory directory that honours `expect` like the real writer does.
#[derive(Default)]
pub(crate) struct Fake {
    entries: BTreeMap<Dn, Entry>,
    fail_add: bool,
    /// Store DN values the way AD does: the target's canonical form (here: `CN=`, no spaces).
    canonical_dns: bool,
    writes: usize,
    /// Once this many writes succeeded, every operation fails as on a dropped connection.
    lose_after_writes: Option<usize>,
    /// This many reads find nothing, as when another writer adds the entry right after them.
    pub(crate) hide_reads: usize,
    /// Every successful write, in order: `add DN`, `delete DN`, `modify DN`. An `add` of a DN
    /// that was deleted before is a new object (a new entryUUID/objectGUID on a real server).
    pub(crate) ops: Vec<String>,
    /// Deletes of these DNs are refused (LDAP 50), as for an account without Delete rights.
    pub(crate) deny_delete: Vec<Dn>,
    /// The most objects that held [`URI`] at once, after any write.
    pub(crate) most_holders: usize,
}

impl Fake {
    fn with(entries: &[Entry]) -> Fake {
        let mut f = Fake::default();
        for e in entries {
            f.entries.insert(e.dn.clone(), e.clone());
        }
        f
    }

    fn has(&self, dn: &str) -> bool {
        self.entries.contains_key(&Dn::parse(dn).unwrap())
    }

    fn get(&self, dn: &str) -> &Entry {
        &self.entries[&Dn::parse(dn).unwrap()]
    }

    fn conflict(dn: &Dn, reason: String) -> WriteError {
        WriteError::Conflict {
            dn: dn.clone(),
            source: format!("{dn} changed: {reason}").into(),
        }
    }

    fn connected(&self, dn: &Dn) -> Result<(), WriteError> {
        match self.lose_after_writes {
            Some(n) if self.writes >= n => Err(WriteError::Transient {
                dn: dn.clone(),
                source: "connection to fake:// lost: end of stream".into(),
            }),
            _ => Ok(()),
        }
    }

    /// How many objects hold [`URI`] now.
    fn holders(&self) -> usize {
        let uri = SipUri::parse(URI).unwrap();
        self.entries
            .values()
            .filter(|e| uri.held_in(e.get("msRTCSIP-PrimaryUserAddress")))
            .count()
    }

    fn count_holders(&mut self) {
        self.most_holders = self.most_holders.max(self.holders());
    }

    fn check(&self, dn: &Dn, expect: &[AttrValues]) -> Result<(), WriteError> {
        match self.entries.get(dn) {
            None => Err(Fake::conflict(dn, "gone".into())),
            Some(e) => e.check(expect).map_err(|r| Fake::conflict(dn, r)),
        }
    }
}

impl DirectoryWriter for Fake {
    async fn read_entry(&mut self, dn: &Dn) -> Result<Option<Entry>, WriteError> {
        self.connected(dn)?;
        if self.hide_reads > 0 {
            self.hide_reads -= 1;
            return Ok(None);
        }
        Ok(self.entries.get(dn).cloned())
    }

    async fn add(&mut self, entry: &Entry) -> Result<(), WriteError> {
        self.connected(&entry.dn)?;
        if self.fail_add && entry.get("msRTCSIP-OwnerUrn").len() == 1 {
            return Err(WriteError::Refused {
                dn: entry.dn.clone(),
                rc: Some(65),
                source: "add failed: LDAP 65: object class violation".into(),
            });
        }
        if self.entries.contains_key(&entry.dn) {
            return Err(WriteError::Exists {
                dn: entry.dn.clone(),
                source: format!("add of {}: an entry with this DN already exists", entry.dn).into(),
            });
        }
        self.writes += 1;
        self.ops.push(format!("add {}", entry.dn));
        let mut stored = entry.clone();
        if self.canonical_dns {
            for a in &mut stored.attributes {
                if a.name.is("msRTCSIP-PrimaryHomeServer") {
                    for v in &mut a.values {
                        *v = String::from_utf8_lossy(v)
                            .replace(", ", ",")
                            .replace("cn=", "CN=")
                            .into_bytes();
                    }
                }
            }
        }
        self.entries.insert(entry.dn.clone(), stored);
        self.count_holders();
        Ok(())
    }

    async fn delete(&mut self, dn: &Dn, expect: &[AttrValues]) -> Result<(), WriteError> {
        self.connected(dn)?;
        self.check(dn, expect)?;
        if self.deny_delete.contains(dn) {
            return Err(WriteError::Denied {
                dn: dn.clone(),
                source: format!("delete of {dn} failed: LDAP 50").into(),
            });
        }
        self.writes += 1;
        self.ops.push(format!("delete {dn}"));
        self.entries.remove(dn);
        self.count_holders();
        Ok(())
    }

    /// Like OpenLDAP, the fake keeps no tombstones.
    async fn reanimate(&mut self, _guid: &[u8], dn: &Dn) -> Result<bool, WriteError> {
        self.connected(dn)?;
        Ok(false)
    }

    async fn modify(
        &mut self,
        dn: &Dn,
        mods: &[Modification],
        expect: &[AttrValues],
    ) -> Result<(), WriteError> {
        self.connected(dn)?;
        self.check(dn, expect)?;
        let Some(entry) = self.entries.get(dn) else {
            return Err(Fake::conflict(dn, "gone".into()));
        };
        let mut attrs = entry.to_attributes();
        let mut next = Attributes::new();
        for m in mods {
            match m {
                Modification::Delete(a) => {
                    let now = attrs.get(a.name.as_str()).to_vec();
                    if a.values.iter().any(|v| !now.contains(v)) {
                        return Err(Fake::conflict(dn, "value gone (16)".into()));
                    }
                    let mut rebuilt = Attributes::new();
                    for (n, vs) in attrs.iter() {
                        let kept: Vec<Vec<u8>> = if *n == a.name {
                            vs.iter()
                                .filter(|v| !a.values.is_empty() && !a.values.contains(v))
                                .cloned()
                                .collect()
                        } else {
                            vs.clone()
                        };
                        if !kept.is_empty() {
                            rebuilt.insert(n.as_str(), kept);
                        }
                    }
                    attrs = rebuilt;
                }
                // Values join those the attribute has (`Attributes::insert` appends; AD's
                // `description` is multi-valued); adding one it has already is refused (LDAP 20).
                Modification::Add(a) => {
                    let mut now = attrs.get(a.name.as_str()).to_vec();
                    now.extend(next.get(a.name.as_str()).iter().cloned());
                    if a.values.iter().any(|v| now.contains(v)) {
                        return Err(Fake::conflict(dn, "value exists (20)".into()));
                    }
                    next.insert(a.name.as_str(), a.values.clone());
                }
            }
        }
        for (n, vs) in next.iter() {
            attrs.insert(n.as_str(), vs.clone());
        }
        self.writes += 1;
        self.ops.push(format!("modify {dn}"));
        let updated = Entry::new(entry.dn.clone(), &attrs);
        self.entries.insert(dn.clone(), updated);
        self.count_holders();
        Ok(())
    }
}

const USER: &str = "CN=OCSChat,OU=Service Accounts,DC=contoso,DC=com";
const ENDPOINT: &str = "CN={e},CN=Application Contacts,DC=contoso,DC=com";
const URI: &str = "sip:ocschat@contoso.com";

fn dn(text: &str) -> Dn {
    Dn::parse(text).unwrap()
}

fn user_entry() -> Entry {
    Entry {
        dn: dn(USER),
        attributes: vec![
            AttrValues::text("cn", &["OCSChat"]),
            AttrValues::text("objectClass", &["top", "user"]),
            AttrValues::text("msRTCSIP-PrimaryUserAddress", &[URI]),
            AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"]),
            AttrValues::text("msRTCSIP-OptionFlags", &["256"]),
            AttrValues {
                name: "objectSid".into(),
                values: vec![vec![1, 5, 0, 0xff]],
            },
        ],
    }
}

fn header(dn_text: &str) -> Header {
    Header {
        dn: dn(dn_text),
        sip_uri: SipUri::parse(URI).unwrap(),
        pool: "pcpool1.contoso.com".into(),
        status: Status::Ready,
        not_before: None,
        reason: String::new(),
    }
}

fn swap_plan(retire: Retire) -> Plan {
    let r = RetireUser {
        header: header(USER),
        retire,
        expect: vec![
            AttrValues::text("msRTCSIP-PrimaryUserAddress", &[URI]),
            AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"]),
        ],
        cleared: match retire {
            Retire::Disable => vec![
                AttrValues::text("msRTCSIP-OptionFlags", &["256"]),
                AttrValues::text("msRTCSIP-PrimaryUserAddress", &[URI]),
                AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"]),
            ],
            Retire::Delete => Vec::new(),
        },
    };
    let c = CreateEndpoint {
        header: header(ENDPOINT),
        expect: Vec::new(),
        entry: vec![
            AttrValues::text("objectClass", &["contact"]),
            AttrValues::text("msRTCSIP-PrimaryUserAddress", &[URI]),
            AttrValues::text("msRTCSIP-OwnerUrn", &["urn:application:persistentchat"]),
            AttrValues::text("msRTCSIP-UserEnabled", &["TRUE"]),
        ],
    };
    Plan {
        format: 1,
        fingerprint: String::new(),
        changes: vec![Change::RetireUser(r), Change::CreateEndpoint(c)],
        findings: Vec::new(),
        summary: crate::plan::Summary {
            ready: 2,
            ..Default::default()
        },
    }
}

/// Applies [`swap_plan`] as run `r1` on `dir`, journaling into `notes`.
fn apply_swap(retire: Retire, dir: &mut Fake, notes: &mut Vec<Note>) -> Result<Report, ApplyError> {
    block(apply(
        &swap_plan(retire),
        "r1",
        dir,
        notes,
        &CancellationToken::new(),
    ))
}

fn journal(notes: &[Note]) -> Vec<(Event, Outcome, Option<Step>)> {
    notes.iter().map(|n| (n.event, n.outcome, n.step)).collect()
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// The order of a swap: the user releases the URI on the same object (its msRTCSIP-* values
/// cleared, reversibly), the endpoint is added and read back, and only then, with
/// `retire = "delete"`, is the user deleted.
#[test]
fn a_swap_releases_then_adds_and_verifies_then_deletes() {
    for retire in [Retire::Delete, Retire::Disable] {
        let mut dir = Fake::with(&[user_entry()]);
        let mut notes: Vec<Note> = Vec::new();
        let report = apply_swap(retire, &mut dir, &mut notes).unwrap();
        assert_eq!((report.applied, report.failed), (1, 0), "{retire:?}");
        let mut want = vec![
            (Event::SwapIntent, Outcome::Started, None),
            (Event::BeforeImage, Outcome::Ok, None),
            (Event::Step, Outcome::Started, Some(Step::DisableUser)),
            (Event::Step, Outcome::Ok, Some(Step::DisableUser)),
            (Event::Step, Outcome::Started, Some(Step::AddEndpoint)),
            (Event::Step, Outcome::Ok, Some(Step::AddEndpoint)),
            (Event::Step, Outcome::Ok, Some(Step::Verify)),
        ];
        if retire == Retire::Delete {
            want.extend([
                (Event::Step, Outcome::Started, Some(Step::DeleteUser)),
                (Event::Step, Outcome::Ok, Some(Step::DeleteUser)),
            ]);
        }
        want.push((Event::SwapDone, Outcome::Ok, None));
        assert_eq!(journal(&notes), want, "{retire:?}");
        assert_eq!(notes[1].before.as_ref().unwrap(), &user_entry());
        assert!(notes.iter().all(|n| n.swap.as_deref() == Some("r1#1")));
        let mut ops = vec![format!("modify {USER}"), format!("add {ENDPOINT}")];
        if retire == Retire::Delete {
            ops.push(format!("delete {USER}"));
        }
        assert_eq!(dir.ops, ops, "{retire:?}");
        assert_eq!(dir.has(USER), retire == Retire::Disable);
        assert!(dir.has(ENDPOINT));
    }
}

/// A failed add puts the values back on the same object, whatever `retire` says: the user is
/// never deleted before its endpoint is proven, so it is never re-created (which on AD would
/// be a new principal: new objectGUID, new objectSid, no group memberships).
#[test]
fn a_failed_add_gives_the_same_user_its_values_back() {
    for retire in [Retire::Delete, Retire::Disable] {
        let mut dir = Fake::with(&[user_entry()]);
        dir.fail_add = true;
        let mut notes: Vec<Note> = Vec::new();
        let report = apply_swap(retire, &mut dir, &mut notes).unwrap();
        assert_eq!((report.applied, report.rolled_back), (0, 1), "{retire:?}");
        assert!(report.errors[0].rolled_back(), "{:?}", report.errors);
        assert!(
            report.errors[0]
                .to_string()
                .ends_with("; the user was restored"),
            "{}",
            report.errors[0]
        );
        assert_eq!(
            dir.ops,
            [format!("modify {USER}"), format!("modify {USER}")],
            "{retire:?}: released and given back, never deleted or re-created"
        );
        assert_eq!(
            dir.get(USER).to_attributes(),
            user_entry().to_attributes(),
            "{retire:?}"
        );
        let tail: Vec<_> = journal(&notes).into_iter().rev().take(3).collect();
        assert_eq!(
            tail,
            [
                (Event::Rollback, Outcome::Ok, Some(Step::RestoreUser)),
                (Event::Rollback, Outcome::Started, Some(Step::RestoreUser)),
                (Event::Step, Outcome::Failed, Some(Step::AddEndpoint)),
            ]
        );
    }
}

/// The endpoint serves the URI, but the user cannot be deleted: the swap fails and says so,
/// the user stays released (not deleted, nothing lost), and no one else holds the URI.
#[test]
fn a_refused_delete_leaves_the_user_released_and_the_endpoint_serving() {
    let mut dir = Fake::with(&[user_entry()]);
    dir.deny_delete = vec![dn(USER)];
    let mut notes: Vec<Note> = Vec::new();
    let report = apply_swap(Retire::Delete, &mut dir, &mut notes).unwrap();
    assert_eq!((report.applied, report.failed), (0, 1));
    let e = report.errors[0].to_string();
    assert!(
        e.contains(&format!("{USER} was released but not deleted")),
        "{e}"
    );
    assert!(dir.has(ENDPOINT));
    assert!(dir.get(USER).get("msRTCSIP-PrimaryUserAddress").is_empty());
    assert_eq!(
        journal(&notes).last(),
        Some(&(Event::SwapDone, Outcome::Failed, None))
    );
}

#[test]
fn a_concurrent_change_aborts_only_that_swap_and_writes_nothing() {
    let mut changed = user_entry();
    changed.attributes[3] = AttrValues::text("msRTCSIP-UserEnabled", &["FALSE"]);
    let mut dir = Fake::with(&[changed]);
    let mut notes: Vec<Note> = Vec::new();
    let report = apply_swap(Retire::Delete, &mut dir, &mut notes).unwrap();
    assert_eq!(report.failed, 1);
    let e = &report.errors[0];
    assert!(
        matches!(&e.fault, SwapFault::Changed { dn, .. } if dn.as_str() == USER),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("changed since it was planned: msRTCSIP-UserEnabled is \"FALSE\" now"),
        "{e}"
    );
    assert_eq!(dir.writes, 0);
    assert!(notes.iter().all(|n| n.event != Event::BeforeImage));
}

#[test]
fn disable_clears_only_the_msrtcsip_attributes() {
    let mut dir = Fake::with(&[user_entry()]);
    let mut notes: Vec<Note> = Vec::new();
    apply_swap(Retire::Disable, &mut dir, &mut notes).unwrap();
    let user = dir.get(USER);
    let names: Vec<&str> = user.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["cn", "objectClass", "objectSid"]);
}

/// The journal and directory of a run that crashed right after its `writes`-th directory write
/// (or, with `fail_add`, whose add was refused): the journal as far as it got, without the
/// record of the write that never happened.
fn crashed_after(writes: usize, retire: Retire) -> (Vec<Note>, Fake) {
    let mut dir = Fake::with(&[user_entry()]);
    dir.lose_after_writes = Some(writes);
    let mut notes: Vec<Note> = Vec::new();
    let result = apply_swap(retire, &mut dir, &mut notes);
    assert!(matches!(result, Err(ApplyError::Lost { .. })), "{writes}");
    // A crash writes no `failed` record for the step it interrupted.
    if notes.last().is_some_and(|n| n.outcome == Outcome::Failed) {
        notes.pop();
    }
    dir.lose_after_writes = None;
    dir.ops.clear();
    (notes, dir)
}

fn unfinished_from(notes: &[Note]) -> Vec<crate::audit::Unfinished> {
    crate::audit::unfinished_swaps(&records_from(notes))
}

/// The notes as the audit log's records of run `r1`.
fn records_from(notes: &[Note]) -> Vec<crate::audit::Record> {
    notes
        .iter()
        .enumerate()
        .map(|(i, n)| crate::audit::Record {
            v: 1,
            run_id: "r1".into(),
            seq: i as u64 + 1,
            time: String::new(),
            event: n.event,
            outcome: n.outcome,
            actor: crate::audit::Actor {
                bind_dn: None,
                host: "h".into(),
            },
            dn: n.dn.clone(),
            sip_uri: n.sip_uri.clone(),
            swap: n.swap.clone(),
            step: n.step,
            message: n.message.clone(),
            counts: None,
            plan: None,
            changes: n.changes.clone(),
            before: n.before.clone(),
            after: n.after.clone(),
            prev: String::new(),
            mac: None,
        })
        .collect()
}

/// Recovery after a crash at each point of the new order finishes the swap the way the run
/// would have: nothing written means a fresh plan; a released user gets its endpoint, then
/// (with `retire = "delete"`) is deleted; an endpoint already added is not added twice.
#[test]
fn recovery_finishes_a_swap_crashed_after_each_write() {
    for (retire, writes, outcome, ops) in [
        (Retire::Delete, 0, Outcome::Skipped, vec![]),
        (
            Retire::Delete,
            1,
            Outcome::Ok,
            vec![format!("add {ENDPOINT}"), format!("delete {USER}")],
        ),
        (
            Retire::Delete,
            2,
            Outcome::Ok,
            vec![format!("delete {USER}")],
        ),
        (Retire::Disable, 0, Outcome::Skipped, vec![]),
        (
            Retire::Disable,
            1,
            Outcome::Ok,
            vec![format!("add {ENDPOINT}")],
        ),
        (Retire::Disable, 2, Outcome::Ok, vec![]),
    ] {
        let (notes, mut dir) = crashed_after(writes, retire);
        let open = unfinished_from(&notes);
        assert_eq!(open.len(), 1, "{retire:?} {writes}");
        let mut log: Vec<Note> = Vec::new();
        let done = block(recover(&open, &mut dir, &mut log)).unwrap();
        assert_eq!(done[0].outcome, outcome, "{retire:?} {writes}: {done:?}");
        assert_eq!(dir.ops, ops, "{retire:?} {writes}");
        assert_eq!(log.last().unwrap().event, Event::Recovery);
        if writes > 0 {
            assert!(dir.has(ENDPOINT), "{retire:?} {writes}");
            assert_eq!(
                dir.has(USER),
                retire == Retire::Disable,
                "{retire:?} {writes}"
            );
        } else {
            assert_eq!(dir.get(USER), &user_entry(), "{retire:?} {writes}");
        }
    }
}

/// The user was released when the run crashed and the endpoint cannot be added: recovery puts
/// the values back on the same object (no delete, no re-create).
#[test]
fn recovery_gives_a_released_user_its_values_back_when_the_endpoint_cannot_be_added() {
    for retire in [Retire::Delete, Retire::Disable] {
        let (notes, mut dir) = crashed_after(1, retire);
        dir.fail_add = true;
        let mut log: Vec<Note> = Vec::new();
        let done = block(recover(&unfinished_from(&notes), &mut dir, &mut log)).unwrap();
        assert!(done[0].message.starts_with("rolled back"), "{done:?}");
        assert_eq!(dir.ops, [format!("modify {USER}")], "{retire:?}");
        assert_eq!(dir.get(USER).to_attributes(), user_entry().to_attributes());
    }
}

/// A swap left open by a version that deleted the user first: the user is gone and the
/// endpoint missing. Recovery adds the endpoint, or, when that fails, re-creates the user
/// from its before-image (the only way back for an object already deleted).
#[test]
fn recovery_of_a_swap_whose_user_is_gone_adds_the_endpoint_or_recreates_the_user() {
    for fail_add in [false, true] {
        let (notes, mut dir) = crashed_after(1, Retire::Delete);
        dir.entries.remove(&dn(USER));
        dir.fail_add = fail_add;
        let mut log: Vec<Note> = Vec::new();
        let done = block(recover(&unfinished_from(&notes), &mut dir, &mut log)).unwrap();
        if fail_add {
            assert!(done[0].message.starts_with("rolled back"), "{done:?}");
            assert_eq!(
                dir.get(USER).to_attributes(),
                recreate_entry(&user_entry()).to_attributes()
            );
        } else {
            assert_eq!(done[0].outcome, Outcome::Ok, "{done:?}");
            assert!(dir.has(ENDPOINT));
            assert!(!dir.has(USER));
        }
    }
}

/// Recovery compares the URI the user holds with the one normalisation planning uses: a value
/// with a trailing space or other case is still this URI (the user was not released).
#[test]
fn recovery_sees_a_user_holding_the_uri_in_another_spelling() {
    let mut held = user_entry();
    held.attributes[2] =
        AttrValues::text("msRTCSIP-PrimaryUserAddress", &["SIP:OCSChat@Contoso.com "]);
    let (notes, _) = crashed_after(0, Retire::Delete);
    let mut dir = Fake::with(&[held]);
    let mut log: Vec<Note> = Vec::new();
    let done = block(recover(&unfinished_from(&notes), &mut dir, &mut log)).unwrap();
    assert_eq!(done[0].outcome, Outcome::Skipped, "{done:?}");
    assert!(dir.ops.is_empty());
}

/// The directory goes away before the release, before the add, before the read-back: the run
/// stops with `Lost` (no rollback on the dead connection, no `swap_done`), recovery while it is
/// still down records nothing that would close the swap, and recovery once it is back finishes
/// it. See: #8 (faults).
#[test]
fn a_lost_connection_stops_the_run_and_leaves_the_swap_open_for_recovery() {
    for writes in [0, 1, 2] {
        let mut dir = Fake::with(&[user_entry()]);
        dir.lose_after_writes = Some(writes);
        let mut notes: Vec<Note> = Vec::new();
        let e = apply_swap(Retire::Delete, &mut dir, &mut notes).unwrap_err();
        assert!(matches!(e, ApplyError::Lost { .. }), "{writes}: {e}");
        assert!(
            e.to_string()
                .contains("swap r1#1 (sip:ocschat@contoso.com), which stays open"),
            "{e}"
        );
        assert_eq!(dir.writes, writes);
        assert!(
            notes
                .iter()
                .all(|n| !matches!(n.event, Event::SwapDone | Event::Rollback)),
            "{writes}: {:?}",
            journal(&notes)
        );
        let open = unfinished_from(&notes);
        assert_eq!(open.len(), 1, "{writes}");

        let mut log: Vec<Note> = Vec::new();
        let still_down = block(recover(&open, &mut dir, &mut log));
        assert!(
            matches!(still_down, Err(ApplyError::Lost { .. })),
            "{writes}"
        );
        let both: Vec<Note> = notes.iter().chain(&log).cloned().collect();
        assert_eq!(
            unfinished_from(&both).len(),
            1,
            "{writes}: {:?}",
            journal(&both)
        );

        dir.lose_after_writes = None;
        let done = block(recover(&open, &mut dir, &mut log)).unwrap();
        let want = if writes == 0 {
            Outcome::Skipped
        } else {
            Outcome::Ok
        };
        assert_eq!(done[0].outcome, want, "{writes}: {done:?}");
        assert_eq!(dir.has(ENDPOINT), writes > 0);
        assert_eq!(dir.has(USER), writes == 0);
    }
}

/// AD refuses its own attributes on an add (`primaryGroupID`: "00002035: The primary group
/// isn't settable on add operations"), so a re-created user carries every other attribute of
/// its before-image, and none of those.
#[test]
fn a_recreated_user_leaves_out_what_active_directory_sets_itself() {
    let mut image = user_entry();
    for (name, value) in [
        ("objectGUID", &b"\x01\x02"[..]),
        ("primaryGroupID", b"513"),
        ("whenCreated", b"20261124080000.0Z"),
        ("uSNChanged", b"4242"),
        ("sAMAccountType", b"805306368"),
        ("memberOf", b"CN=Chat,CN=Users,DC=contoso,DC=com"),
    ] {
        image.attributes.push(AttrValues {
            name: name.into(),
            values: vec![value.to_vec()],
        });
    }
    let want: Vec<AttrValues> = user_entry()
        .attributes
        .into_iter()
        .filter(|a| !a.name.is("objectSid"))
        .collect();
    let entry = recreate_entry(&image);
    assert_eq!(entry.dn, image.dn);
    assert_eq!(entry.attributes, want);

    let mut dir = Fake::default();
    block(restore_user(&mut dir, Retire::Delete, &image)).unwrap();
    assert_eq!(dir.entries.values().next().unwrap().attributes, want);
}

/// AD rewrites a DN value to the target's canonical DN: the read-back compares DNs, not text,
/// so a configuration with other case or spacing does not fail a swap that succeeded.
#[test]
fn the_endpoint_read_back_compares_dn_values_as_dns() {
    let mut plan = swap_plan(Retire::Delete);
    let Change::CreateEndpoint(create) = &mut plan.changes[1] else {
        panic!("not a create");
    };
    create.entry.push(AttrValues::text(
        "msRTCSIP-PrimaryHomeServer",
        &["cn=Lc Services, cn=Microsoft,DC=contoso,DC=com"],
    ));
    let mut dir = Fake::with(&[user_entry()]);
    dir.canonical_dns = true;
    let mut notes: Vec<Note> = Vec::new();
    let report = block(apply(
        &plan,
        "r1",
        &mut dir,
        &mut notes,
        &CancellationToken::new(),
    ))
    .unwrap();
    assert_eq!(report.applied, 1, "{:?}", report.errors);
    let stored = dir.get(ENDPOINT);
    assert_eq!(
        stored.get("msRTCSIP-PrimaryHomeServer"),
        [b"CN=Lc Services,CN=Microsoft,DC=contoso,DC=com".to_vec()]
    );

    // A different DN is still caught.
    let Change::CreateEndpoint(mut c) = plan.changes[1].clone() else {
        panic!("not a create");
    };
    c.entry.retain(|a| !a.name.is("msRTCSIP-PrimaryHomeServer"));
    c.entry.push(AttrValues::text(
        "msRTCSIP-PrimaryHomeServer",
        &["CN=Other,DC=contoso,DC=com"],
    ));
    let e = block(verify(&mut dir, &Change::CreateEndpoint(c)))
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, SwapFault::ReadBack { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("read back wrong: msRTCSIP-PrimaryHomeServer is"),
        "{e}"
    );
}

#[test]
fn a_stop_requested_before_a_swap_starts_none_and_says_how_many_were_left() {
    let mut dir = Fake::with(&[user_entry()]);
    let mut notes: Vec<Note> = Vec::new();
    let stop = CancellationToken::new();
    stop.cancel();
    let report = block(apply(
        &swap_plan(Retire::Delete),
        "r1",
        &mut dir,
        &mut notes,
        &stop,
    ))
    .unwrap();
    assert_eq!(
        (report.swaps, report.applied, report.not_started),
        (1, 0, 1)
    );
    assert!(notes.is_empty(), "nothing journaled: {notes:?}");
    assert_eq!(dir.writes, 0);
    assert!(dir.has(USER));
}

mod properties {
    //! plan → apply → (crash) → recover under random failure points, with the invariant of
    //! issue #16: no identity lost (the user is never deleted before its endpoint holds the
    //! URI, and never re-created), and the URI is never held twice, and in the end held by
    //! exactly one object.

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    struct Faults {
        retire: Retire,
        /// The run dies (connection lost, then a crash: no record of the write in flight)
        /// once this many writes succeeded.
        crash_after: Option<usize>,
        /// The apply's add is refused.
        fail_add: bool,
        /// Recovery's add is refused too.
        fail_add_in_recovery: bool,
        /// The delete of the released user is refused (no Delete right).
        deny_delete: bool,
    }

    fn faults() -> impl Strategy<Value = Faults> {
        (
            prop_oneof![Just(Retire::Delete), Just(Retire::Disable)],
            proptest::option::of(0usize..4),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(retire, crash_after, fail_add, fail_add_in_recovery, deny_delete)| Faults {
                    retire,
                    crash_after,
                    fail_add,
                    fail_add_in_recovery,
                    deny_delete,
                },
            )
    }

    /// The apply of the swap under `f`, and, if it crashed, the next run's recovery: the
    /// directory and the journal afterwards.
    fn applied_and_recovered(f: &Faults) -> (Fake, Vec<Note>) {
        let mut dir = Fake::with(&[user_entry()]);
        dir.lose_after_writes = f.crash_after;
        dir.fail_add = f.fail_add;
        if f.deny_delete {
            dir.deny_delete = vec![dn(USER)];
        }
        let mut notes: Vec<Note> = Vec::new();
        let applied = apply_swap(f.retire, &mut dir, &mut notes);
        if applied.is_err() {
            // A crash: the write in flight has no record.
            if notes.last().is_some_and(|n| n.outcome == Outcome::Failed) {
                notes.pop();
            }
            dir.lose_after_writes = None;
            dir.fail_add = f.fail_add_in_recovery;
            let open = unfinished_from(&notes);
            assert_eq!(open.len(), 1);
            let mut log: Vec<Note> = Vec::new();
            block(recover(&open, &mut dir, &mut log)).unwrap();
            notes.extend(log);
        }
        dir.fail_add = false;
        (dir, notes)
    }

    /// Restores run `r1` from its journal; with `lose_after`, the connection drops once that
    /// many more writes succeeded, and the restore is run again, as an administrator would.
    fn restored(dir: &mut Fake, notes: &[Note], lose_after: Option<usize>) -> RestoreReport {
        let records = records_from(notes);
        dir.lose_after_writes = lose_after.map(|n| dir.writes + n);
        let stop = CancellationToken::new();
        let mut log: Vec<Note> = Vec::new();
        let first = block(async {
            let plan = plan_restore(&records, "r1", dir).await?.expect("run r1");
            Ok::<_, WriteError>(apply_restore(&plan, dir, &mut log, &stop).await.unwrap())
        });
        dir.lose_after_writes = None;
        match first {
            Ok(report) if report.stopped.is_none() => report,
            // Lost while planning or between actions: the rerun reads the directory again.
            _ => block(async {
                let plan = plan_restore(&records, "r1", dir).await.unwrap().unwrap();
                apply_restore(&plan, dir, &mut log, &stop).await.unwrap()
            }),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_identity_is_lost_and_the_uri_is_held_once(f in faults()) {
            let (dir, notes) = applied_and_recovered(&f);
            prop_assert!(unfinished_from(&notes).is_empty(), "{:?}", journal(&notes));
            prop_assert!(dir.most_holders <= 1, "the URI was held twice: {:?}", dir.ops);
            prop_assert_eq!(dir.holders(), 1, "held by exactly one object: {:?}", dir.ops);
            // The user is never re-created, so it keeps its identity whenever it exists.
            let recreated = format!("add {USER}");
            prop_assert!(!dir.ops.contains(&recreated), "{:?}", dir.ops);
            if !dir.has(USER) {
                prop_assert_eq!(f.retire, Retire::Delete);
                prop_assert!(dir.has(ENDPOINT), "deleted without an endpoint: {:?}", dir.ops);
            } else if !dir.has(ENDPOINT) {
                prop_assert_eq!(
                    dir.get(USER).to_attributes(),
                    user_entry().to_attributes(),
                    "given back exactly"
                );
            }
        }

        /// Then `pcsync restore` of the run, itself cut off at a random write and run again:
        /// the URI is never held twice, and in the end the user holds it, alone, with its
        /// values as before the run; a user that was never deleted is never re-created (its
        /// identity is kept), and the endpoint is gone.
        #[test]
        fn a_restore_after_any_failure_gives_the_user_back_and_the_uri_once(
            f in faults(),
            lose_after in proptest::option::of(0usize..3),
        ) {
            let (mut dir, notes) = applied_and_recovered(&f);
            let deleted = dir.ops.contains(&format!("delete {USER}"));
            let report = restored(&mut dir, &notes, lose_after);
            prop_assert!(report.stopped.is_none(), "{report:?}");
            prop_assert_eq!(report.failed, 0, "{:?}", report.errors);
            prop_assert!(dir.most_holders <= 1, "the URI was held twice: {:?}", dir.ops);
            prop_assert_eq!(dir.holders(), 1, "held by exactly one object: {:?}", dir.ops);
            prop_assert!(dir.has(USER), "the user is back: {:?}", dir.ops);
            prop_assert!(!dir.has(ENDPOINT), "the endpoint is gone: {:?}", dir.ops);
            let msrtcsip = |e: &Entry| {
                let mut values: Vec<AttrValues> = e
                    .attributes
                    .iter()
                    .filter(|a| a.name.is_msrtcsip())
                    .cloned()
                    .collect();
                values.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
                values
            };
            prop_assert_eq!(msrtcsip(dir.get(USER)), msrtcsip(&user_entry()));
            if !deleted {
                prop_assert!(
                    !dir.ops.contains(&format!("add {USER}")),
                    "re-created although never deleted: {:?}",
                    dir.ops
                );
            }
        }
    }
}
