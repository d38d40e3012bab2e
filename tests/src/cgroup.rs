//! A memory cgroup of the test's own, under the one the test runs in: a controller is moved
//! into it, held to a memory limit, and its peak and OOM kills read back. The cgroup v1 memory
//! controller is used where it is mounted (`/sys/fs/cgroup/memory`), else cgroup v2 with the
//! memory controller enabled for the test's cgroup's children.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A memory cgroup; removed when dropped (after its processes are gone).
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

const HOW: &str = "the memory-pressure test needs to create a memory cgroup under its own: run it \
                   as root on a machine with cgroup v1's memory controller mounted at \
                   /sys/fs/cgroup/memory, or cgroup v2 with the memory controller delegated \
                   (memory in cgroup.subtree_control of the test's cgroup)";

impl MemoryCgroup {
    /// Creates `name` under the test process's own memory cgroup.
    pub fn create(name: &str) -> anyhow::Result<MemoryCgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").context(HOW)?;
        let v1 = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
        let (parent, v2) = match v1 {
            Some(path) if Path::new("/sys/fs/cgroup/memory").is_dir() => (
                PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')),
                false,
            ),
            _ => {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .with_context(|| format!("no cgroup v2 entry in /proc/self/cgroup; {HOW}"))?;
                let dir = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
                let enabled =
                    std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                if !enabled.split_whitespace().any(|c| c == "memory") {
                    bail!(
                        "{} does not delegate the memory controller; {HOW}",
                        dir.display()
                    );
                }
                (dir, true)
            }
        };
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}; {HOW}", dir.display()))?;
        Ok(MemoryCgroup { dir, v2 })
    }

    fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        std::fs::write(self.dir.join(file), value)
            .with_context(|| format!("cannot write {value} to {}", self.dir.join(file).display()))
    }

    fn read(&self, file: &str) -> anyhow::Result<String> {
        std::fs::read_to_string(self.dir.join(file))
            .with_context(|| format!("cannot read {}", self.dir.join(file).display()))
    }

    /// Holds its processes to `bytes` of memory, with no swap to escape to.
    pub fn limit(&self, bytes: u64) -> anyhow::Result<()> {
        if self.v2 {
            self.write("memory.max", &bytes.to_string())?;
            let _ = self.write("memory.swap.max", "0");
        } else {
            self.write("memory.limit_in_bytes", &bytes.to_string())?;
            let _ = self.write("memory.memsw.limit_in_bytes", &bytes.to_string());
        }
        Ok(())
    }

    /// Moves the process `pid` in.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// The most memory its processes have used at once, in bytes.
    pub fn peak(&self) -> anyhow::Result<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        Ok(self.read(file)?.trim().parse()?)
    }

    /// How many of its processes the kernel's OOM killer has killed.
    pub fn oom_kills(&self) -> anyhow::Result<u64> {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = self.read(file)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
