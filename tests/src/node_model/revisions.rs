//! snapd's revisioned data directory. `$SNAP_DATA` is
//! `/var/snap/microk8s/<revision>`, the path every wrapper and daemon is given,
//! and `/var/snap/microk8s/current` a relative symlink to it (snapd
//! `overlord/snapstate/backend/link.go`, `updateCurrentSymlinks`). A refresh
//! copies the data of the revision it leaves to the new one, symlinks as
//! symlinks (`backend/copydata.go`, `copySnapDataDirectory`: `cp -av`), moves
//! `current`, and removes what falls outside `refresh.retain` (2 on a classic
//! system, snapcraft.io/docs "System options"): so a file that names the
//! revisioned path (an absolute symlink, a kubeconfig) still resolves after one
//! refresh and dangles after two, as MicroK8s's own kubeconfig paths did ("these
//! paths included snap revision numbers, which would break after two snap
//! refreshes", canonical/microk8s PR #3554).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::state::Ctx;

/// The revision `snap install` brings.
const FIRST: u64 = 1234;
/// snapd's `refresh.retain` on a classic system.
const RETAIN: usize = 2;

impl Ctx {
    /// The installed revision.
    pub(super) fn revision(&self) -> u64 {
        self.state["revision"].as_u64().unwrap_or(FIRST)
    }

    /// `$SNAP_DATA` of `rev`, under the root.
    pub(super) fn revision_dir(&self, rev: u64) -> PathBuf {
        self.root.join("var/snap/microk8s").join(rev.to_string())
    }

    /// Make `rev`'s data directory `current` (a directory already at `current`,
    /// laid out before the install, becomes the revision's).
    pub(super) fn link_revision(&self, rev: u64) {
        let base = self.root.join("var/snap/microk8s");
        let current = base.join("current");
        let dir = self.revision_dir(rev);
        if current.is_dir() && !current.is_symlink() && !dir.exists() {
            fs::rename(&current, &dir).expect("the data directory becomes a revision's");
        }
        fs::create_dir_all(&dir).expect("the revision's data directory");
        let tmp = base.join(".current.tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(rev.to_string(), &tmp).expect("symlink");
        fs::rename(&tmp, &current).expect("current moves atomically");
    }

    /// A refresh's data step: copy the current revision's data to the next one,
    /// make it current, and remove the revisions `refresh.retain` lets go.
    pub(super) fn next_revision(&mut self) {
        let (old, new) = (self.revision(), self.revision() + 1);
        let st = Command::new("cp")
            .arg("-a")
            .arg(self.revision_dir(old))
            .arg(self.revision_dir(new))
            .status()
            .expect("cp runs");
        assert!(st.success(), "copying revision {old}'s data failed");
        self.link_revision(new);
        self.set_state("revision", serde_json::json!(new));
        let mut revs: Vec<u64> = fs::read_dir(self.root.join("var/snap/microk8s"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
            .collect();
        revs.sort_unstable();
        let keep_from = revs.len().saturating_sub(RETAIN);
        for rev in &revs[..keep_from] {
            let _ = fs::remove_dir_all(self.revision_dir(*rev));
            self.event(&format!("snapd: removed revision {rev}'s data"));
        }
        self.event(&format!("snapd: revision {new} is current"));
    }
}
