//! Starting, recognising and stopping the control-plane processes.
//!
//! A started process gets its own process group (so Ctrl-C on `cargo xtask` does not reach it
//! and it outlives the command) and a record `<name>.pid` holding its pid, its start time from
//! `/proc/<pid>/stat` and its executable. `down` signals a pid only when all three still match,
//! so a recycled pid is never touched.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What identifies a process started by `up`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks since boot.
    pub start_time: u64,
    pub exe: PathBuf,
}

impl PidRecord {
    pub fn render(&self) -> String {
        format!(
            "pid={}\nstart_time={}\nexe={}\n",
            self.pid,
            self.start_time,
            self.exe.display()
        )
    }

    pub fn parse(text: &str) -> Result<Self> {
        let (mut pid, mut start_time, mut exe) = (None, None, None);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .with_context(|| format!("bad pid file line {line:?}"))?;
            match key {
                "pid" => pid = Some(value.parse().context("bad pid")?),
                "start_time" => start_time = Some(value.parse().context("bad start_time")?),
                "exe" => exe = Some(PathBuf::from(value)),
                _ => {}
            }
        }
        Ok(PidRecord {
            pid: pid.context("pid file has no pid")?,
            start_time: start_time.context("pid file has no start_time")?,
            exe: exe.context("pid file has no exe")?,
        })
    }

    pub fn read(path: &Path) -> Result<Option<Self>> {
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text)
                .with_context(|| format!("reading {}", path.display()))
                .map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Whether the recorded process is still this process (alive, same start, same binary).
    pub fn is_running(&self) -> bool {
        let Some(stat) = read_stat(self.pid) else {
            return false;
        };
        if stat.state == 'Z' || stat.state == 'X' || stat.start_time != self.start_time {
            return false;
        }
        let Ok(cmdline) = fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            return false;
        };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        argv0 == self.exe.as_os_str().as_encoded_bytes()
    }
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`; the command name in parentheses may hold spaces and parentheses,
/// so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ")" come field 3 (state) onwards; starttime is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_time: fields.get(22 - 3)?.parse().ok()?,
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A component process started by this run of `up`.
pub struct Started {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Started {
    /// Fails with the tail of the log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited on start ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }
}

/// Starts `exe args…` detached in its own process group, logging to `log`, and records it in
/// `pid_file`.
pub fn spawn(
    name: &'static str,
    exe: &Path,
    args: &[String],
    log: &Path,
    pid_file: &Path,
) -> Result<Started> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir)?;
    }
    if log.exists() {
        let _ = fs::rename(log, log.with_extension("log.prev"));
    }
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id();
    let stat = read_stat(pid).with_context(|| format!("reading /proc/{pid}/stat of {name}"))?;
    let record = PidRecord {
        pid,
        start_time: stat.start_time,
        exe: exe.to_path_buf(),
    };
    if let Some(dir) = pid_file.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(pid_file, record.render())
        .with_context(|| format!("writing {}", pid_file.display()))?;
    Ok(Started {
        name,
        child,
        log: log.to_path_buf(),
    })
}

/// Stops the process recorded in `pid_file` if it is still the one `up` started: SIGTERM, then
/// SIGKILL after `grace`. Removes the record. Returns whether a process was stopped.
pub fn stop(pid_file: &Path, grace: Duration) -> Result<bool> {
    let Some(record) = PidRecord::read(pid_file)? else {
        return Ok(false);
    };
    let mut stopped = false;
    if record.is_running() {
        signal(record.pid, "TERM")?;
        let deadline = Instant::now() + grace;
        while record.is_running() && Instant::now() < deadline {
            sleep(Duration::from_millis(100));
        }
        if record.is_running() {
            signal(record.pid, "KILL")?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while record.is_running() && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
        }
        stopped = true;
    }
    fs::remove_file(pid_file).with_context(|| format!("removing {}", pid_file.display()))?;
    Ok(stopped)
}

/// Sends a signal with the `kill` command (the crate forbids the unsafe `libc` route).
fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .context("running `kill`")?;
    // A process that exited between the check and the signal is fine.
    if !status.success() && read_stat(pid).is_some_and(|s| s.state != 'Z') {
        bail!("`kill -{sig} {pid}` failed ({status})");
    }
    Ok(())
}

/// The last `lines` lines of a log file (reads at most its last 64 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = OpenOptions::new().read(true).open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    last_lines(&String::from_utf8_lossy(&buf), lines)
}

pub fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_records_round_trip() {
        let r = PidRecord {
            pid: 42,
            start_time: 12345,
            exe: PathBuf::from("/cache/bin/etcd-v3.7.3/etcd"),
        };
        assert_eq!(PidRecord::parse(&r.render()).unwrap(), r);
        assert!(PidRecord::parse("pid=1\n").is_err());
        assert!(PidRecord::parse("pid=x\nstart_time=1\nexe=/a\n").is_err());
    }

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let line = "1234 (we ird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 12 0 \
                    987654 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn recognises_itself_and_not_a_stranger() {
        let pid = std::process::id();
        let stat = read_stat(pid).unwrap();
        let exe = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv0 = String::from_utf8(exe.split(|b| *b == 0).next().unwrap().to_vec()).unwrap();
        let me = PidRecord {
            pid,
            start_time: stat.start_time,
            exe: PathBuf::from(argv0),
        };
        assert!(me.is_running());
        let recycled = PidRecord {
            start_time: stat.start_time + 1,
            ..me.clone()
        };
        assert!(!recycled.is_running());
        let other_binary = PidRecord {
            exe: PathBuf::from("/not/this"),
            ..me
        };
        assert!(!other_binary.is_running());
    }

    #[test]
    fn tails_lines() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
    }
}
