//! Compiled seccomp programs, cached: libseccomp compiles Docker's default profile (~350 rules)
//! in about 10 ms, and libcontainer 0.7 does that again in every container's init. berthd
//! compiles each distinct profile once into `<exec-root>/seccomp/<key>.bpf` (the key hashes the
//! profile, libseccomp's version and API level and the kernel release), removes `linux.seccomp`
//! from the bundle it gives libcontainer and names the program in an annotation instead; the
//! container's init then loads that program itself, right before exec (`supervisor/executor.rs`).
//!
//! The translation below is libcontainer's `seccomp::initialize_seccomp` (0.7.0) step by step,
//! with `export_bpf` in place of `load`, so the program is the one libcontainer would load.
//! Profiles libcontainer must handle itself are not cached: a notify action or listener path
//! (the notify fd goes to a listener), or filter flags.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use sha2::{Digest, Sha256};

/// The bundle annotation naming the compiled program the init loads.
pub const PROGRAM_ANNOTATION: &str = "io.berth.seccomp.program";
/// The capabilities the init holds only to load the program (comma-separated), dropped after.
pub const DROP_CAPS_ANNOTATION: &str = "io.berth.seccomp.drop-caps";

/// Whether the profile can be loaded from a cached program with no help from libcontainer.
pub fn cacheable(p: &LinuxSeccomp) -> bool {
    p.default_action() != LinuxSeccompAction::ScmpActNotify
        && p.listener_path().is_none()
        && p.flags().as_ref().is_none_or(|f| f.is_empty())
        && p.syscalls().as_ref().is_none_or(|s| {
            s.iter()
                .all(|r| r.action() != LinuxSeccompAction::ScmpActNotify)
        })
}

/// Blocking. The cached program of `profile` under `dir`, compiled now if it is not there yet.
pub fn program(dir: &Path, profile: &LinuxSeccomp) -> Result<PathBuf, String> {
    let json = serde_json::to_vec(profile).map_err(|e| format!("encode seccomp profile: {e}"))?;
    let mut h = Sha256::new();
    h.update(&json);
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        h.update(format!("\0libseccomp {}.{}.{}", v.major, v.minor, v.micro));
    }
    h.update(format!("\0api {}", libseccomp::get_api()));
    if let Ok(u) = nix::sys::utsname::uname() {
        h.update(b"\0");
        h.update(u.release().as_encoded_bytes());
    }
    let path = dir.join(format!("{}.bpf", hex::encode(h.finalize())));
    if path.exists() {
        return Ok(path);
    }
    crate::util::fs::ensure_dir(dir, 0o700)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let ctx = compile(profile)?;
    // A temporary name per process and thread, renamed into place: two starts compiling the
    // same profile at once both write a whole program.
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}.bpf",
        std::process::id(),
        std::thread::current().id()
    ));
    let write = || -> Result<(), String> {
        let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        ctx.export_bpf(&f).map_err(|e| e.to_string())?;
        f.flush().map_err(|e| e.to_string())?;
        let len = f.metadata().map_err(|e| e.to_string())?.len();
        if len == 0 || !len.is_multiple_of(8) {
            return Err(format!("{len} bytes is no BPF program"));
        }
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("write seccomp program {}: {e}", path.display())
    })?;
    Ok(path)
}

/// libcontainer's `initialize_seccomp` without the load.
fn compile(seccomp: &LinuxSeccomp) -> Result<ScmpFilterContext, String> {
    let err = |what: &str, e: libseccomp::error::SeccompError| format!("seccomp: {what}: {e}");
    let default_action = translate_action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default_action).map_err(|e| err("new filter", e))?;
    if let Some(architectures) = seccomp.architectures() {
        for &arch in architectures {
            ctx.add_arch(translate_arch(arch))
                .map_err(|e| err("add arch", e))?;
        }
    }
    ctx.set_ctl_nnp(false).map_err(|e| err("set nnp", e))?;
    for syscall in seccomp.syscalls().iter().flatten() {
        let action = translate_action(syscall.action(), syscall.errno_ret())?;
        if action == default_action {
            continue;
        }
        for name in syscall.names() {
            // An unknown name: the kernel does not have this syscall (libcontainer skips it).
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            match syscall.args() {
                Some(args) => {
                    let mut seen = HashSet::new();
                    let mut duplicate = false;
                    let comparators: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|arg| {
                            let index = arg.index() as u32;
                            duplicate |= !seen.insert(index);
                            ScmpArgCompare::new(
                                index,
                                translate_op(arg.op(), arg.value_two()),
                                arg.value(),
                            )
                        })
                        .collect();
                    if duplicate {
                        for c in &comparators {
                            ctx.add_rule_conditional(action, sc, std::slice::from_ref(c))
                                .map_err(|e| err("add rule", e))?;
                        }
                    } else {
                        ctx.add_rule_conditional(action, sc, &comparators)
                            .map_err(|e| err("add rule", e))?;
                    }
                }
                None => {
                    ctx.add_rule(action, sc).map_err(|e| err("add rule", e))?;
                }
            }
        }
    }
    Ok(ctx)
}

fn translate_action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            errno
                .try_into()
                .map_err(|_| format!("seccomp: trace errno {errno} out of range"))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
    })
}

/// libcontainer's operator translation, `SCMP_CMP_MASKED_EQ`'s operands included (see
/// `runtime/seccomp.rs`, which emits them for it).
fn translate_op(op: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

fn translate_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Load a compiled program into the calling thread (the container's init or an exec'd
/// process, single-threaded): what libseccomp's `seccomp_load` does for a filter without flags.
pub fn load(program: &[u8]) -> Result<(), String> {
    if program.is_empty()
        || !program.len().is_multiple_of(8)
        || program.len() / 8 > u16::MAX as usize
    {
        return Err(format!("{} bytes is no BPF program", program.len()));
    }
    // The program as the kernel's sock_filter array; copied so that it is aligned.
    let filters: Vec<libc::sock_filter> = program
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filters`, which outlives the call; the kernel copies the
    // program and does not keep the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0u32,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "load seccomp program: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_is_cacheable_and_compiles_once() {
        let caps = ["CAP_CHOWN".to_string()];
        let profile = crate::runtime::seccomp::default_profile(&caps).unwrap();
        assert!(cacheable(&profile));
        let dir = tempfile::tempdir().unwrap();
        let p1 = program(dir.path(), &profile).unwrap();
        let len = std::fs::metadata(&p1).unwrap().len();
        assert!(len > 800 && len.is_multiple_of(8), "{len}");
        let mtime = std::fs::metadata(&p1).unwrap().modified().unwrap();
        let p2 = program(dir.path(), &profile).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(std::fs::metadata(&p2).unwrap().modified().unwrap(), mtime);
        // A different profile is another program (CAP_SYS_ADMIN allows more calls).
        let other =
            crate::runtime::seccomp::default_profile(&["CAP_SYS_ADMIN".to_string()]).unwrap();
        assert_ne!(program(dir.path(), &other).unwrap(), p1);
    }

    #[test]
    fn notify_and_flags_are_left_to_libcontainer() {
        let base: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        assert!(cacheable(&base));
        let notify: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/x","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        )
        .unwrap();
        assert!(!cacheable(&notify));
        let flags: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"]}"#,
        )
        .unwrap();
        assert!(!cacheable(&flags));
    }

    #[test]
    fn load_rejects_garbage() {
        assert!(load(&[]).is_err());
        assert!(load(&[0u8; 7]).is_err());
    }
}
