// SPDX-License-Identifier: GPL-2.0
//! tfreeze: fsfreeze that cannot hang.
//!
//! Freezes a filesystem through `/dev/timed-freeze` (the timed_freeze kernel module): each
//! attempt has a deadline, a timed-out attempt is undone completely, and the freeze is tried
//! again. Drop-in for `fsfreeze -f` / `fsfreeze -u`, plus a mode that freezes, runs a
//! command (a snapshot, say) and thaws when it ends, whatever happens, and the
//! administrator's view of such freezes (`--list`, `--force-thaw`).

mod uapi;

use clap::{ArgGroup, CommandFactory, Parser};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// fsfreeze that cannot hang: freeze a filesystem with a deadline, retries and a complete
/// undo on timeout, through /dev/timed-freeze.
#[derive(Parser, Debug)]
#[command(name = "tfreeze", version, about, long_about = None)]
#[command(
    after_help = "Exit status: 0 on success, 1 on failure (usage errors included, as \
                  fsfreeze); with COMMAND, the command's status (128+N if it died of \
                  signal N)."
)]
#[command(group(ArgGroup::new("action").args(["freeze", "unfreeze", "command", "list", "force_thaw"])))]
struct Cli {
    /// Freeze the filesystem (an ordinary userspace freeze: `fsfreeze -u` thaws it).
    #[arg(short = 'f', long = "freeze")]
    freeze: bool,

    /// Thaw the filesystem (FITHAW).
    #[arg(short = 'u', long = "unfreeze")]
    unfreeze: bool,

    /// List every owned freeze (the `-- COMMAND` freezes of any tfreeze): id, the pid and
    /// command that made it (and whether it has exited), age and mount point. Needs
    /// CAP_SYS_ADMIN.
    #[arg(long)]
    list: bool,

    /// Thaw the owned freeze ID (from --list) whose holder cannot: it hangs writing to the
    /// frozen filesystem, or a child inherited its file. Needs CAP_SYS_ADMIN.
    #[arg(long, value_name = "ID")]
    force_thaw: Option<u64>,

    /// Deadline of each attempt, e.g. 500ms, 2s (at most 60s; 0 makes one attempt that
    /// does not wait for writers).
    #[arg(short = 't', long, default_value = "10s", value_parser = parse_timeout)]
    timeout: Duration,

    /// Attempts after the first, when an attempt times out (at most 16; default 1, or 0
    /// with a timeout of 0, which is one attempt).
    #[arg(short = 'r', long,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(uapi::RETRIES_MAX)))]
    retries: Option<u32>,

    /// Deadline of the whole freeze, e.g. 30s: after an attempt gave up on writers that
    /// stay inside, the next one waits for them to leave, blocking nobody, until one more
    /// attempt can end by then (at least the timeout; default: (retries + 1) x timeout +
    /// retries x 10ms, the time the attempts alone can take).
    #[arg(short = 'd', long, value_parser = parse_deadline)]
    deadline: Option<Duration>,

    /// Make the freeze belong to tfreeze's open device file: only tfreeze thaws it, and
    /// it is thawed when tfreeze exits, even by SIGKILL (implied by COMMAND).
    #[arg(long)]
    owned: bool,

    /// Switch writers to their slow path with an expedited RCU grace period.
    #[arg(long)]
    expedited: bool,

    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,

    /// Print the man page (roff) and exit.
    #[arg(long, hide = true)]
    man: bool,

    /// The mount point (any path on the filesystem).
    #[arg(required_unless_present_any = ["man", "list", "force_thaw"])]
    mountpoint: Option<PathBuf>,

    /// Freeze (owned), run COMMAND, thaw when it exits.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = if s == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(s).map_err(|e| e.to_string())?
    };
    if d.as_nanos() > u128::from(uapi::TIMEOUT_MAX_NS) {
        return Err("at most 60s".into());
    }
    Ok(d)
}

fn parse_deadline(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("a deadline of 0 is no deadline: leave --deadline out".into());
    }
    if d.as_nanos() > u128::from(uapi::DEADLINE_MAX_NS) {
        return Err("at most 17min".into());
    }
    Ok(d)
}

/// What to do, checked.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Freeze,
    Thaw,
    Run(Vec<OsString>),
    List,
    ForceThaw(u64),
}

impl Cli {
    /// Attempts after the first: as given, else 1 (0 with a timeout of 0).
    fn retries(&self) -> u32 {
        self.retries
            .unwrap_or(if self.timeout.is_zero() { 0 } else { 1 })
    }

    fn mnt(&self) -> &Path {
        self.mountpoint.as_deref().unwrap_or(Path::new(""))
    }
}

/// The action the arguments ask for (clap's group makes them exclusive).
fn action(cli: &Cli) -> Result<Action, Failure> {
    let usage = |m: &str| Err(Failure::Usage(m.into()));
    if cli.list {
        return Ok(Action::List);
    }
    if let Some(id) = cli.force_thaw {
        return Ok(Action::ForceThaw(id));
    }
    if cli.timeout.is_zero() && cli.retries() != 0 {
        return usage("a timeout of 0 is exactly one attempt: no --retries");
    }
    if cli.timeout.is_zero() && cli.deadline.is_some() {
        return usage("a timeout of 0 is exactly one attempt: no --deadline");
    }
    if cli.deadline.is_some_and(|d| d < cli.timeout) {
        return usage("--deadline leaves no room for one attempt: make it at least the timeout");
    }
    if cli.freeze && cli.owned {
        return usage(
            "--owned with -f would thaw as soon as tfreeze exits; use it with -- COMMAND",
        );
    }
    if cli.freeze {
        Ok(Action::Freeze)
    } else if cli.unfreeze {
        Ok(Action::Thaw)
    } else if !cli.command.is_empty() {
        Ok(Action::Run(cli.command.clone()))
    } else {
        usage("nothing to do: give -f, -u or -- COMMAND")
    }
}

/// Why tfreeze failed, said so that a person understands it.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The arguments ask for nothing sensible.
    #[error("{0}")]
    Usage(String),
    /// The device is not there.
    #[error(
        "opening {}: {source}; load the module first: insmod timed_freeze.ko \
             (or modprobe timed_freeze)",
        uapi::DEVICE
    )]
    NoModule { source: io::Error },
    /// A call failed; `what` says which.
    #[error("{what}: {source}{}", hint(what, source))]
    Io { what: String, source: io::Error },
    /// Every attempt gave up at its deadline (or the filesystem said ETIMEDOUT).
    #[error("{}", explain_timeout(mnt, report))]
    TimedOut {
        mnt: PathBuf,
        report: uapi::FreezeArgs,
    },
}

impl Failure {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        Failure::Io {
            what: what.into(),
            source,
        }
    }

    fn errno(&self) -> i32 {
        match self {
            Failure::Usage(_) => libc::EINVAL,
            Failure::TimedOut { .. } => libc::ETIMEDOUT,
            Failure::NoModule { source } | Failure::Io { source, .. } => {
                source.raw_os_error().unwrap_or(0)
            }
        }
    }

    fn report(&self) -> Option<&uapi::FreezeArgs> {
        match self {
            Failure::TimedOut { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// What an errno means for the call `what`.
fn hint(what: &str, e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => " (needs CAP_SYS_ADMIN)",
        Some(libc::EOPNOTSUPP) => " (the filesystem does not support freezing)",
        Some(libc::EBUSY) => " (already frozen)",
        Some(libc::EINVAL) if what.starts_with("thawing") => " (not frozen)",
        _ => "",
    }
}

fn open_device() -> Result<File, Failure> {
    // Close-on-exec (std's default too, said here because it matters): a COMMAND or any
    // child must not inherit the file, which would keep an owned freeze alive after us.
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(uapi::DEVICE)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                Failure::NoModule { source: e }
            } else {
                Failure::io(format!("opening {}", uapi::DEVICE), e)
            }
        })
}

/// An ioctl of nix's, with its errno as an `io::Error`.
fn ioctl<T>(
    fd: &impl AsRawFd,
    call: unsafe fn(libc::c_int, *mut T) -> nix::Result<libc::c_int>,
    arg: &mut T,
) -> io::Result<()> {
    // SAFETY: `call` is one of the ioctls of `uapi`, each declared with the argument type
    // the kernel expects for it; `arg` is a live, exclusive value of that type.
    unsafe { call(fd.as_raw_fd(), arg) }
        .map(|_| ())
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// The same for the ioctls whose argument the kernel only reads.
fn ioctl_w<T>(
    fd: &impl AsRawFd,
    call: unsafe fn(libc::c_int, *const T) -> nix::Result<libc::c_int>,
    arg: &T,
) -> io::Result<()> {
    // SAFETY: As in `ioctl()`, for a read-only argument.
    unsafe { call(fd.as_raw_fd(), arg) }
        .map(|_| ())
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Explains an ETIMEDOUT report.
fn explain_timeout(mnt: &Path, a: &uapi::FreezeArgs) -> String {
    let mnt = mnt.display();
    if a.gave_up == 0 {
        return format!(
            "freezing {mnt} failed: the filesystem itself reported a timeout (its storage?) \
             after {} attempt(s). Nothing was left frozen.",
            a.attempts
        );
    }
    let writers = if uapi::is_level(a.gave_up) {
        format!(" with {} writer(s) still inside", a.writers_inside)
    } else {
        String::new()
    };
    let after = if a.gave_up == uapi::WAIT_COMMIT {
        "The filesystem's own freeze is still waiting for its storage: until the storage takes \
         that write, the module holds the freeze and the filesystem's writers wait; then it \
         undoes the freeze by itself."
    } else {
        "Nothing was left frozen: writers go on as before."
    };
    format!(
        "freezing {mnt} timed out: {} attempt(s) in {:.3} s, which kept writers out for \
         {:.3} s in all; the last gave up waiting for {}{writers}. {after}",
        a.attempts,
        a.elapsed_ns as f64 / 1e9,
        a.blocked_ns as f64 / 1e9,
        uapi::wait_name(a.gave_up),
    )
}

fn freeze(dev: &File, fs: &File, cli: &Cli, owned: bool) -> Result<uapi::FreezeArgs, Failure> {
    let mut a = uapi::FreezeArgs {
        size: uapi::size_of::<uapi::FreezeArgs>(),
        flags: if owned { uapi::OWNED } else { 0 }
            | if cli.expedited { uapi::EXPEDITED } else { 0 },
        timeout_ns: u64::try_from(cli.timeout.as_nanos()).unwrap_or(u64::MAX),
        fd: fs.as_raw_fd(),
        retries: cli.retries(),
        deadline_ns: cli
            .deadline
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        ..Default::default()
    };
    match ioctl(dev, uapi::ioc_freeze, &mut a) {
        Ok(()) => Ok(a),
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => Err(Failure::TimedOut {
            mnt: cli.mnt().to_path_buf(),
            report: a,
        }),
        Err(e) => Err(Failure::io(format!("freezing {}", cli.mnt().display()), e)),
    }
}

fn report_json(
    op: &str,
    mnt: &Path,
    ok: Result<&uapi::FreezeArgs, &Failure>,
    extra: &[(&str, serde_json::Value)],
) {
    let mut o = serde_json::json!({
        "operation": op, "mountpoint": mnt.to_string_lossy(), "ok": ok.is_ok()
    });
    let r = match ok {
        Ok(a) => Some(a),
        Err(f) => {
            o["error"] = f.to_string().into();
            o["errno"] = f.errno().into();
            f.report()
        }
    };
    if let Some(a) = r {
        o["attempts"] = a.attempts.into();
        o["elapsed_ns"] = a.elapsed_ns.into();
        o["timed_out_level"] = a.timed_out_level.into();
        o["gave_up"] = a.gave_up.into();
        o["gave_up_waiting_for"] = uapi::wait_name(a.gave_up).into();
        o["writers_inside"] = a.writers_inside.into();
        o["blocked_ns"] = a.blocked_ns.into();
        o["left_frozen"] = ok.is_ok().into();
    }
    for (k, v) in extra {
        o[*k] = v.clone();
    }
    println!("{o}");
}

/// The mount points of each `st_dev`, from /proc/self/mountinfo.
fn mount_points() -> Vec<(u64, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            let (maj, min): (u64, u64) = (maj.parse().ok()?, min.parse().ok()?);
            let dev = (min & 0xff) | (maj << 8) | ((min & !0xff) << 12);
            Some((dev, f.get(4)?.replace("\\040", " ")))
        })
        .collect()
}

/// `--list`: every owned freeze.
fn list(dev: &File, json: bool) -> Result<u8, Failure> {
    let mut entries = vec![uapi::Owned::default(); 64];
    loop {
        let mut a = uapi::ListArgs {
            size: uapi::size_of::<uapi::ListArgs>(),
            entries: entries.as_mut_ptr() as u64,
            entry_size: uapi::size_of::<uapi::Owned>() as u32,
            count: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        ioctl(dev, uapi::ioc_list, &mut a).map_err(|e| Failure::io("listing owned freezes", e))?;
        let total = a.total as usize;
        if total > entries.len() {
            entries.resize(total + 16, uapi::Owned::default());
            continue;
        }
        entries.truncate(total);
        break;
    }
    let mounts = mount_points();
    let mnt_of = |dev: u64| {
        mounts
            .iter()
            .find(|(d, _)| *d == dev)
            .map_or_else(|| format!("dev {dev:#x}"), |(_, m)| m.clone())
    };
    let comm = |e: &uapi::Owned| {
        let bytes: Vec<u8> = e
            .comm
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let exited = |e: &uapi::Owned| e.flags & uapi::OWNED_EXITED != 0;
    if json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id, "pid": e.pid, "comm": comm(e), "exited": exited(e),
                    "age_ns": e.age_ns, "dev": e.dev, "mountpoint": mnt_of(e.dev),
                })
            })
            .collect();
        println!("{}", serde_json::Value::from(v));
        return Ok(0);
    }
    println!(
        "{:>6} {:>8} {:<16} {:>10}  MOUNTPOINT",
        "ID", "PID", "COMMAND", "AGE"
    );
    for e in &entries {
        let pid = if exited(e) {
            format!("{} (exited)", e.pid)
        } else {
            e.pid.to_string()
        };
        println!(
            "{:>6} {:>8} {:<16} {:>9.1}s  {}",
            e.id,
            pid,
            comm(e),
            e.age_ns as f64 / 1e9,
            mnt_of(e.dev)
        );
    }
    Ok(0)
}

/// `--force-thaw ID`.
fn force_thaw(id: u64) -> Result<u8, Failure> {
    let dev = open_device()?;
    let a = uapi::ForceThawArgs {
        size: uapi::size_of::<uapi::ForceThawArgs>(),
        id,
        flags: 0,
    };
    ioctl_w(&dev, uapi::ioc_force_thaw, &a).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) {
            Failure::Usage(format!("no owned freeze {id} (tfreeze --list shows them)"))
        } else {
            Failure::io(format!("thawing owned freeze {id}"), e)
        }
    })?;
    Ok(0)
}

/// `-- COMMAND`: freeze (owned), run it, thaw; its exit status.
fn run_command(cli: &Cli, fs: &File, cmd: &[OsString]) -> Result<u8, Failure> {
    let mnt = cli.mnt();
    let dev = open_device()?;
    let r = freeze(&dev, fs, cli, true);
    if let Err(f) = r {
        if cli.json {
            report_json("run", mnt, Err(&f), &[]);
        }
        return Err(f);
    }
    // While COMMAND runs, tfreeze itself must survive ^C and SIGTERM to thaw; the command
    // gets them (same process group) and decides. Ignored signals stay ignored across exec,
    // so the child puts the defaults back before it.
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT];
    for sig in SIGNALS {
        // SAFETY: Setting a signal disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut command = Command::new(&cmd[0]);
    command.args(&cmd[1..]);
    // SAFETY: The closure only calls signal(2), which is async-signal-safe, as code between
    // fork and exec must be.
    unsafe {
        command.pre_exec(|| {
            for sig in SIGNALS {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let status = command.status();
    // Thaw: explicitly, and in any case when `dev` is closed.
    let t = uapi::ThawArgs {
        size: uapi::size_of::<uapi::ThawArgs>(),
        flags: uapi::OWNED,
        fd: fs.as_raw_fd(),
        __reserved: 0,
    };
    let thawed = match ioctl_w(&dev, uapi::ioc_thaw, &t) {
        // Not ours any more: the administrator thawed it (tfreeze --force-thaw).
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!(
                "tfreeze: {} had already been thawed (by the administrator?)",
                mnt.display()
            );
            Ok(())
        }
        r => r,
    };
    let code: u8 = match &status {
        Ok(s) => s
            .code()
            .map(|c| c as u8)
            .or_else(|| s.signal().map(|n| 128 + n as u8))
            .unwrap_or(1),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 127,
        Err(_) => 126,
    };
    if let Err(e) = &status {
        eprintln!("tfreeze: running {}: {e}", cmd[0].to_string_lossy());
    }
    if cli.json {
        report_json(
            "run",
            mnt,
            r.as_ref(),
            &[
                ("command_status", code.into()),
                ("thawed", thawed.is_ok().into()),
            ],
        );
    }
    thawed.map_err(|e| Failure::io(format!("thawing {}", mnt.display()), e))?;
    Ok(code)
}

fn run(cli: &Cli) -> Result<u8, Failure> {
    let act = action(cli)?;
    match act {
        Action::List => return list(&open_device()?, cli.json),
        Action::ForceThaw(id) => return force_thaw(id),
        _ => {}
    }
    let mnt = cli.mnt();
    let fs = File::open(mnt).map_err(|e| Failure::io(format!("opening {}", mnt.display()), e))?;
    match act {
        Action::Thaw => {
            let mut unused: libc::c_int = 0;
            let r = ioctl(&fs, uapi::fithaw, &mut unused)
                .map_err(|e| Failure::io(format!("thawing {}", mnt.display()), e));
            if cli.json {
                let d = uapi::FreezeArgs::default();
                report_json("thaw", mnt, r.as_ref().map(|_| &d), &[]);
            }
            r.map(|_| 0)
        }
        Action::Freeze => {
            let dev = open_device()?;
            let r = freeze(&dev, &fs, cli, false);
            if cli.json {
                report_json("freeze", mnt, r.as_ref(), &[]);
            }
            r.map(|_| 0)
        }
        Action::Run(cmd) => run_command(cli, &fs, &cmd),
        Action::List | Action::ForceThaw(_) => unreachable!("handled above"),
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1, as fsfreeze's do (clap's default is 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if cli.man {
        let man = clap_mangen::Man::new(Cli::command());
        if man.render(&mut io::stdout()).is_err() {
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if !cli.json {
                eprintln!("tfreeze: {f}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tfreeze").chain(args.iter().copied()))
    }

    #[test]
    fn fsfreeze_compatible_forms() {
        let c = parse(&["-f", "/mnt"]).unwrap();
        assert_eq!(action(&c).unwrap(), Action::Freeze);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.retries(), 1);
        assert_eq!(
            action(&parse(&["-u", "/mnt"]).unwrap()).unwrap(),
            Action::Thaw
        );
        assert_eq!(
            action(&parse(&["--freeze", "/mnt"]).unwrap()).unwrap(),
            Action::Freeze
        );
    }

    #[test]
    fn durations_in_human_form() {
        let c = parse(&["-f", "--timeout", "500ms", "/mnt"]).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(500));
        let c = parse(&["-f", "-t", "2s", "/mnt"]).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(2));
        let c = parse(&["-f", "-t", "0", "/mnt"]).unwrap();
        assert_eq!(c.timeout, Duration::ZERO);
        assert_eq!(c.retries(), 0);
        assert!(action(&parse(&["-f", "-t", "0", "-r", "2", "/mnt"]).unwrap()).is_err());
        assert!(parse(&["-f", "-t", "61s", "/mnt"]).is_err());
        assert!(parse(&["-f", "-t", "soon", "/mnt"]).is_err());
    }

    #[test]
    fn deadline_checked() {
        let c = parse(&["-f", "-t", "1s", "-r", "16", "-d", "30s", "/mnt"]).unwrap();
        assert_eq!(c.deadline, Some(Duration::from_secs(30)));
        assert_eq!(action(&c).unwrap(), Action::Freeze);
        assert!(action(&parse(&["-f", "-t", "2s", "-d", "1s", "/mnt"]).unwrap()).is_err());
        assert!(action(&parse(&["-f", "-t", "0", "-d", "1s", "/mnt"]).unwrap()).is_err());
        assert!(parse(&["-f", "-d", "0", "/mnt"]).is_err());
        assert!(parse(&["-f", "-d", "18min", "/mnt"]).is_err());
        assert!(parse(&["-f", "-d", "later", "/mnt"]).is_err());
    }

    #[test]
    fn retries_bounded() {
        assert_eq!(parse(&["-f", "-r", "16", "/mnt"]).unwrap().retries(), 16);
        assert!(parse(&["-f", "-r", "17", "/mnt"]).is_err());
        assert!(parse(&["-f", "-r", "-1", "/mnt"]).is_err());
    }

    #[test]
    fn command_mode() {
        let c = parse(&["--timeout", "1s", "/mnt", "--", "cp", "-a", "x", "y"]).unwrap();
        assert_eq!(
            action(&c).unwrap(),
            Action::Run(vec!["cp".into(), "-a".into(), "x".into(), "y".into()])
        );
        assert!(parse(&["-f", "/mnt", "--", "true"]).is_err());
        assert!(parse(&["-u", "/mnt", "--", "true"]).is_err());
    }

    #[test]
    fn nonsense_refused() {
        assert!(parse(&["-f", "-u", "/mnt"]).is_err());
        assert!(parse(&["-f"]).is_err());
        assert!(action(&parse(&["/mnt"]).unwrap()).is_err());
        assert!(action(&parse(&["-f", "--owned", "/mnt"]).unwrap()).is_err());
        assert!(parse(&["--list", "-f", "/mnt"]).is_err());
        assert!(parse(&["--force-thaw", "x"]).is_err());
    }

    #[test]
    fn admin_forms() {
        assert_eq!(action(&parse(&["--list"]).unwrap()).unwrap(), Action::List);
        assert_eq!(
            action(&parse(&["--force-thaw", "7"]).unwrap()).unwrap(),
            Action::ForceThaw(7)
        );
    }

    #[test]
    fn timeout_explained() {
        let a = uapi::FreezeArgs {
            attempts: 2,
            elapsed_ns: 1_234_000_000,
            timed_out_level: 1,
            gave_up: 1,
            writers_inside: 3,
            blocked_ns: 1_100_000_000,
            ..Default::default()
        };
        let m = explain_timeout(Path::new("/mnt"), &a);
        assert!(m.contains("2 attempt(s) in 1.234 s"), "{m}");
        assert!(m.contains("kept writers out for 1.100 s"), "{m}");
        assert!(
            m.contains("SB_FREEZE_WRITE (writers still inside) with 3 writer(s)"),
            "{m}"
        );
        assert!(m.contains("Nothing was left frozen"), "{m}");
        let a = uapi::FreezeArgs {
            attempts: 2,
            gave_up: uapi::WAIT_COMMIT,
            ..Default::default()
        };
        let m = explain_timeout(Path::new("/mnt"), &a);
        assert!(m.contains("the filesystem's own freeze"), "{m}");
        assert!(m.contains("still waiting for its storage"), "{m}");
        assert!(!m.contains("Nothing was left frozen"), "{m}");
        let a = uapi::FreezeArgs {
            attempts: 1,
            ..Default::default()
        };
        let m = explain_timeout(Path::new("/mnt"), &a);
        assert!(
            m.contains("the filesystem itself reported a timeout"),
            "{m}"
        );
    }
}
