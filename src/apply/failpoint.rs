//! Failpoints (`--features failpoints`; no-ops without it): named points between the steps of a
//! swap where the tests abort the process, pause it, or hold it while they stop the directory or
//! fill the disk, to prove that a crash anywhere loses nothing.

/// Names of the failpoints every swap with a user passes, in order: `swap-user-retired` is
/// right after the release. With `retire = "delete"` a swap also passes [`USER_DELETED`].
pub const FAILPOINTS: &[&str] = &[
    "swap-before-image-written",
    "swap-user-retired",
    "swap-endpoint-added",
    "swap-endpoint-verified",
];

/// Right after the released user was deleted (`retire = "delete"` only), before `swap_done`.
pub const USER_DELETED: &str = "swap-user-deleted";

/// The point of a run between planning and the first swap (`--features failpoints`): after the
/// plan is recorded, before any directory write. Not in [`FAILPOINTS`]: nothing is open there.
pub const RUN_PLANNED: &str = "run-planned";

/// How long a gated failpoint waits for its release file before going on regardless.
#[cfg(feature = "failpoints")]
const GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A failpoint (`--features failpoints`; a no-op without it). What it does depends on how
/// `FAILPOINTS` configures `name`:
/// - `name=return`: abort the process. An abort, not a panic: nothing unwinds, no destructor
///   runs, exactly like a power cut between two steps.
/// - `name=return(MILLISECONDS)`: wait that long (the shutdown test sends SIGTERM there).
/// - `name=return(DIRECTORY)`: a gate. Create `DIRECTORY/name.reached` (holding the PID), then
///   wait, bounded by `GATE_TIMEOUT`, until `DIRECTORY/name.release` exists; the fault tests
///   stop slapd or fill the disk exactly there.
pub(crate) async fn fail_point(name: &str) {
    #[cfg(feature = "failpoints")]
    match fail::eval(name, |arg| arg) {
        None => {}
        Some(None) => {
            eprintln!("pcsync: failpoint {name}: aborting");
            std::process::abort();
        }
        Some(Some(arg)) => match arg.parse::<u64>() {
            Ok(ms) => {
                eprintln!("pcsync: failpoint {name}: pausing {ms} ms");
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            Err(_) => gate(name, std::path::Path::new(&arg)).await,
        },
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(feature = "failpoints")]
async fn gate(name: &str, dir: &std::path::Path) {
    let release = dir.join(format!("{name}.release"));
    eprintln!(
        "pcsync: failpoint {name}: paused until {} exists",
        release.display()
    );
    let _ = std::fs::write(
        dir.join(format!("{name}.reached")),
        std::process::id().to_string(),
    );
    let wait = async {
        while !release.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(GATE_TIMEOUT, wait).await.is_err() {
        eprintln!("pcsync: failpoint {name}: not released within {GATE_TIMEOUT:?}; going on");
    }
}
