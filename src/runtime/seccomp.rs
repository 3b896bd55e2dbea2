//! Docker's seccomp profiles, converted to the OCI `linux.seccomp` that libcontainer loads.
//!
//! Docker's profile format extends the OCI one with conditions: `archMap` (the host's
//! architecture and its sub-architectures), and per rule `includes` / `excludes` on the
//! container's capabilities (its bounding set), the host's architecture and the kernel version
//! (`minKernel`). They are resolved here exactly as moby's `profiles/seccomp` `setupSeccomp` does;
//! the result is a plain OCI profile.
//!
//! `seccomp_default.json` is Docker's default profile (Apache-2.0), copied unchanged from moby
//! `profiles/seccomp/default.json` as shipped with Docker Engine v28.5.2.
//!
//! One libcontainer 0.7 quirk is compensated here: for `SCMP_CMP_MASKED_EQ` it passes `valueTwo`
//! to libseccomp as the mask and `value` as the datum, the reverse of runc (and so of every
//! Docker profile, where `value` is the mask). Rules with that operator are emitted with the two
//! swapped, so that libcontainer applies them as runc does (see `masked_eq_*` tests).

use std::cell::OnceCell;
use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

use super::spec::SpecError;

/// Docker's default profile.
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// Docker's default profile for the given capability set (names like `"CAP_SYS_ADMIN"`: the
/// container's bounding set) on this host's architecture and kernel.
pub fn default_profile(caps: &[String]) -> Result<LinuxSeccomp, SpecError> {
    from_docker_json(DEFAULT_PROFILE, caps)
        .map_err(|e| SpecError::internal(format!("loading the default seccomp profile: {e}")))
}

/// A profile in Docker's JSON format, as the docker CLI sends it inline in
/// `SecurityOpt: ["seccomp=<json>"]`, converted like the default one. A profile that disables
/// seccomp (no `defaultAction` and no `syscalls`) is an error here; see [`load_profile`].
pub fn from_docker_json(json: &str, caps: &[String]) -> Result<LinuxSeccomp, SpecError> {
    load_profile(json, caps)?.ok_or_else(|| {
        SpecError::invalid("seccomp profile has neither a defaultAction nor syscalls")
    })
}

/// Like [`from_docker_json`], with `None` for a profile that disables seccomp, as moby treats a
/// profile without `defaultAction` and `syscalls` (e.g. `{}`).
pub fn load_profile(json: &str, caps: &[String]) -> Result<Option<LinuxSeccomp>, SpecError> {
    let profile: Profile = serde_json::from_str(json)
        .map_err(|e| SpecError::invalid(format!("Decoding seccomp profile failed: {e}")))?;
    let kernel = OnceCell::new();
    convert(profile, caps, host_arch(), &|| {
        kernel.get_or_init(host_kernel_version).clone()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default)]
    default_action: Option<String>,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Syscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The host's architecture in libseccomp's words (as moby's `goToNative` gives them; the names
/// `arches` filters use) and as an OCI architecture when `archMap` can name it.
fn host_arch() -> (&'static str, Option<Arch>) {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
        "x86" => ("x86", Some(Arch::ScmpArchX86)),
        "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
        "arm" => ("arm", Some(Arch::ScmpArchArm)),
        "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
        "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
        "loongarch64" => ("loongarch64", Some(Arch::ScmpArchLoongarch64)),
        "powerpc64" if little => ("ppc64le", Some(Arch::ScmpArchPpc64le)),
        "powerpc64" => ("ppc64", Some(Arch::ScmpArchPpc64)),
        "powerpc" => ("ppc", Some(Arch::ScmpArchPpc)),
        "mips64" if little => ("mipsel64", Some(Arch::ScmpArchMipsel64)),
        "mips64" => ("mips64", Some(Arch::ScmpArchMips64)),
        "mips" if little => ("mipsel", Some(Arch::ScmpArchMipsel)),
        other => (other, None),
    }
}

/// `(kernel, major)` of the running kernel, e.g. `(6, 8)` for `6.8.0-45-generic`.
fn host_kernel_version() -> Result<(u64, u64), String> {
    let uts = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    let release = uts.release().to_string_lossy().into_owned();
    parse_release(&release).ok_or_else(|| format!("failed to parse kernel version {release:?}"))
}

/// moby's `fmt.Sscanf(release, "%d.%d")`.
fn parse_release(release: &str) -> Option<(u64, u64)> {
    fn leading_number(s: &str) -> Option<(u64, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        Some((s[..end].parse().ok()?, &s[end..]))
    }
    let (kernel, rest) = leading_number(release)?;
    let (major, _) = leading_number(rest.strip_prefix('.')?)?;
    Some((kernel, major))
}

/// moby's `KernelVersion.UnmarshalJSON`: `"<kernel>.<major>"`, each below 256, not `0.0`.
fn parse_min_kernel(v: &str) -> Result<Option<(u64, u64)>, SpecError> {
    if v.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        SpecError::invalid(format!(
            "Decoding seccomp profile failed: invalid kernel version: \"{v}\", expected \"<kernel>.<major>\"{why}"
        ))
    };
    let parts: Vec<&str> = v.splitn(3, '.').collect();
    let [k, m] = parts.as_slice() else {
        return Err(bad(""));
    };
    let num = |s: &str| s.parse::<u8>().map(u64::from).map_err(|_| bad(""));
    let (k, m) = (num(k)?, num(m)?);
    if (k, m) == (0, 0) {
        return Err(bad(": version cannot be 0.0"));
    }
    Ok(Some((k, m)))
}

type KernelFn<'a> = &'a dyn Fn() -> Result<(u64, u64), String>;

/// moby's `setupSeccomp`, for the given architecture and kernel.
fn convert(
    profile: Profile,
    caps: &[String],
    (arch, seccomp_arch): (&str, Option<Arch>),
    kernel: KernelFn<'_>,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let syscalls = profile.syscalls.unwrap_or_default();
    let default_action = profile.default_action.unwrap_or_default();
    if default_action.is_empty() && syscalls.is_empty() {
        return Ok(None);
    }
    let mut architectures = profile.architectures.unwrap_or_default();
    let arch_map = profile.arch_map.unwrap_or_default();
    if !architectures.is_empty() && !arch_map.is_empty() {
        return Err(SpecError::invalid(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'",
        ));
    }
    if let Some(native) = seccomp_arch {
        if let Some(entry) = arch_map.iter().find(|a| a.architecture == native) {
            architectures.push(entry.architecture);
            architectures.extend(entry.sub_architectures.iter().flatten().copied());
        }
    }
    let default_action: LinuxSeccompAction = serde_json::from_value(serde_json::Value::String(
        default_action.clone(),
    ))
    .map_err(|_| {
        SpecError::invalid(format!(
            "Decoding seccomp profile failed: unknown defaultAction {default_action:?}"
        ))
    })?;
    let kernel_at_least = |min: (u64, u64)| -> Result<bool, SpecError> {
        let have = kernel().map_err(SpecError::internal)?;
        Ok(have >= min)
    };
    let has_cap = |c: &String| caps.iter().any(|have| have == c);

    let mut rules = Vec::new();
    for call in syscalls {
        let mut names = call.names.unwrap_or_default();
        if let Some(name) = call.name.filter(|n| !n.is_empty()) {
            if !names.is_empty() {
                return Err(SpecError::invalid(
                    "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'",
                ));
            }
            names = vec![name];
        }
        if let Some(ex) = &call.excludes {
            if ex.arches.iter().flatten().any(|a| a == arch) {
                continue;
            }
            if ex.caps.iter().flatten().any(has_cap) {
                continue;
            }
            if let Some(min) = parse_min_kernel(ex.min_kernel.as_deref().unwrap_or(""))? {
                if kernel_at_least(min)? {
                    continue;
                }
            }
        }
        if let Some(inc) = &call.includes {
            if let Some(arches) = inc.arches.as_ref().filter(|a| !a.is_empty()) {
                if !arches.iter().any(|a| a == arch) {
                    continue;
                }
            }
            if !inc.caps.iter().flatten().all(has_cap) {
                continue;
            }
            if let Some(min) = parse_min_kernel(inc.min_kernel.as_deref().unwrap_or(""))? {
                if !kernel_at_least(min)? {
                    continue;
                }
            }
        }
        rules.push(syscall_rule(names, call.action, call.errno_ret, call.args)?);
    }

    let mut b = LinuxSeccompBuilder::default()
        .default_action(default_action)
        .syscalls(rules);
    if let Some(e) = profile.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    if !architectures.is_empty() {
        b = b.architectures(architectures);
    }
    if let Some(f) = profile.flags.filter(|f| !f.is_empty()) {
        b = b.flags(f);
    }
    if let Some(p) = profile.listener_path.filter(|p| !p.as_os_str().is_empty()) {
        b = b.listener_path(p);
    }
    if let Some(m) = profile.listener_metadata.filter(|m| !m.is_empty()) {
        b = b.listener_metadata(m);
    }
    b.build()
        .map(Some)
        .map_err(|e| SpecError::internal(format!("building the seccomp profile: {e}")))
}

fn syscall_rule(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<Arg>>,
) -> Result<LinuxSyscall, SpecError> {
    let mut b = LinuxSyscallBuilder::default().names(names).action(action);
    if let Some(e) = errno_ret {
        b = b.errno_ret(e);
    }
    if let Some(args) = args.filter(|a| !a.is_empty()) {
        let args = args
            .into_iter()
            .map(|a| {
                // libcontainer 0.7 takes the mask from valueTwo (see the module comment).
                let (value, value_two) = match a.op {
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        (a.value_two.unwrap_or(0), Some(a.value))
                    }
                    _ => (a.value, a.value_two),
                };
                let mut ab = oci_spec::runtime::LinuxSeccompArgBuilder::default()
                    .index(a.index)
                    .value(value)
                    .op(a.op);
                if let Some(v2) = value_two {
                    ab = ab.value_two(v2);
                }
                ab.build()
                    .map_err(|e| SpecError::internal(format!("building a seccomp rule: {e}")))
            })
            .collect::<Result<Vec<LinuxSeccompArg>, SpecError>>()?;
        b = b.args(args);
    }
    b.build()
        .map_err(|e| SpecError::internal(format!("building a seccomp rule: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Kinded;

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const DEFAULT_CAPS: &[&str] = &crate::runtime::spec::DEFAULT_CAPABILITIES;

    fn convert_default(
        caps: &[String],
        arch: (&str, Option<Arch>),
        kernel: (u64, u64),
    ) -> LinuxSeccomp {
        let p: Profile = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        convert(p, caps, arch, &|| Ok(kernel)).unwrap().unwrap()
    }

    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == name)
        })
    }

    fn mentioned(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls()
            .iter()
            .flatten()
            .any(|s| s.names().iter().any(|n| n == name))
    }

    const AMD64: (&str, Option<Arch>) = ("amd64", Some(Arch::ScmpArchX86_64));
    const ARM64: (&str, Option<Arch>) = ("arm64", Some(Arch::ScmpArchAarch64));

    #[test]
    fn default_profile_denies_by_default_with_eperm() {
        let p = default_profile(&caps(DEFAULT_CAPS)).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert!(allowed(&p, "read"));
        assert!(allowed(&p, "execve"));
        assert!(!mentioned(&p, "kexec_load"));
        // The round trip through the OCI JSON works.
        let json = serde_json::to_string(&p).unwrap();
        let back: LinuxSeccomp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn capabilities_select_rules() {
        let without = convert_default(&caps(DEFAULT_CAPS), AMD64, (6, 8));
        assert!(!mentioned(&without, "mount"));
        assert!(!mentioned(&without, "reboot"));
        assert!(allowed(&without, "chroot"), "CAP_SYS_CHROOT is a default");
        // clone3 answers ENOSYS so that libc falls back to clone.
        let clone3 = without
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));

        let mut with = caps(DEFAULT_CAPS);
        with.push("CAP_SYS_ADMIN".into());
        let with = convert_default(&with, AMD64, (6, 8));
        assert!(allowed(&with, "mount"));
        assert!(allowed(&with, "clone"));
        assert!(allowed(&with, "clone3"));
        assert!(with
            .syscalls()
            .iter()
            .flatten()
            .all(|s| s.action() == LinuxSeccompAction::ScmpActAllow));
    }

    #[test]
    fn masked_clone_rule_is_swapped_for_libcontainer() {
        let p = convert_default(&caps(DEFAULT_CAPS), AMD64, (6, 8));
        let clone = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &vec!["clone".to_string()])
            .unwrap();
        let args = clone.args().as_ref().unwrap();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].index(), 0, "x86 takes the flags first");
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(args[0].value(), 0);
        assert_eq!(args[0].value_two(), Some(2114060288));
    }

    #[test]
    fn architectures_filter_rules_and_fill_the_arch_list() {
        let amd = convert_default(&caps(DEFAULT_CAPS), AMD64, (6, 8));
        assert_eq!(
            amd.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert!(allowed(&amd, "arch_prctl"));
        assert!(allowed(&amd, "modify_ldt"));
        assert!(!mentioned(&amd, "arm_fadvise64_64"));

        let arm = convert_default(&caps(DEFAULT_CAPS), ARM64, (6, 8));
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        assert!(!mentioned(&arm, "arch_prctl"));
        assert!(allowed(&arm, "arm_fadvise64_64"));

        // s390 orders clone's arguments differently.
        let s390 = convert_default(
            &caps(DEFAULT_CAPS),
            ("s390x", Some(Arch::ScmpArchS390x)),
            (6, 8),
        );
        let clone = s390
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &vec!["clone".to_string()])
            .unwrap();
        assert_eq!(clone.args().as_ref().unwrap()[0].index(), 1);

        // An architecture the map does not know: no list, libseccomp uses the native one.
        let unknown = convert_default(&caps(DEFAULT_CAPS), ("sparc64", None), (6, 8));
        assert_eq!(unknown.architectures(), &None);
    }

    #[test]
    fn min_kernel_includes() {
        let old = convert_default(&caps(DEFAULT_CAPS), AMD64, (4, 4));
        assert!(!mentioned(&old, "ptrace"));
        let new = convert_default(&caps(DEFAULT_CAPS), AMD64, (4, 8));
        assert!(allowed(&new, "ptrace"));
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("3.12-1-amd64"), Some((3, 12)));
        assert_eq!(parse_release("garbage"), None);
        assert!(host_kernel_version().is_ok());
    }

    #[test]
    fn user_profiles() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"name": "chmod", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}],
                 "includes": {"minKernel": "3.1"}}
            ]
        }"#;
        let p = from_docker_json(json, &caps(DEFAULT_CAPS)).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        let s = p.syscalls().as_ref().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].names(), &vec!["chmod".to_string()]);
        assert_eq!(s[0].errno_ret(), Some(13));
        let args = s[2].args().as_ref().unwrap();
        assert_eq!((args[0].value(), args[0].value_two()), (8, None));
        let p = from_docker_json(json, &caps(&["CAP_SYS_ADMIN"])).unwrap();
        assert_eq!(p.syscalls().as_ref().unwrap().len(), 2);

        // Explicit architectures are kept.
        let p = from_docker_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"syscalls":[]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64][..])
        );

        // An empty profile disables seccomp.
        assert_eq!(load_profile("{}", &[]).unwrap(), None);
        assert!(from_docker_json("{}", &[]).is_err());
    }

    #[test]
    fn bad_profiles() {
        let err = from_docker_json("not json", &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Decoding seccomp profile failed: "),
            "{err}"
        );
        assert_eq!(err.kind(), crate::errors::ErrorKind::InvalidParameter);
        let err = from_docker_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86"],
                "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":null}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("both 'architectures' and 'archMap'"));
        let err = from_docker_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ALLOW"}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("both 'name' and 'names'"));
        let err = from_docker_json(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["b"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4"}}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid kernel version"), "{err}");
        let err = from_docker_json(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#, &[]).unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_BOGUS"), "{err}");
    }

    const UMASK_PROFILE: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["umask"],
        "action":"SCMP_ACT_ERRNO","errnoRet":99,
        "args":[{"index":0,"value":511,"valueTwo":18,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#;

    /// Runs one of the helper tests below in a child test process (a seccomp filter cannot be
    /// removed again) and returns its output.
    fn run_child_helper(name: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                &format!("runtime::seccomp::tests::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BERTH_SECCOMP_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Raw clone(2) with `flags`, like fork(); the child exits at once. Returns the errno.
    fn clone_errno(flags: libc::c_long) -> i32 {
        // SAFETY: without CLONE_VM the child gets a copy of this process, like fork(); it only
        // calls _exit.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as libc::c_long,
                0,
                0,
                0,
                0,
            )
        };
        if pid == 0 {
            // SAFETY: ends the child.
            unsafe { libc::_exit(0) }
        }
        if pid < 0 {
            return std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
        }
        let mut status = 0;
        // SAFETY: reaps the child created above.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        0
    }

    #[test]
    #[ignore = "helper, run in a child process by masked_eq_follows_runc_semantics"]
    fn seccomp_umask_helper() {
        if std::env::var_os("BERTH_SECCOMP_CHILD").is_none() {
            return;
        }
        let p = from_docker_json(UMASK_PROFILE, &[]).unwrap();
        libcontainer::seccomp::initialize_seccomp(&p).unwrap();
        let blocked = |mask: libc::c_long| {
            // SAFETY: umask takes a number and cannot fail or touch memory.
            let r = unsafe { libc::syscall(libc::SYS_umask, mask) };
            r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(99)
        };
        println!("UMASK-BLOCKED {} {}", blocked(0o022), blocked(0o077));
    }

    #[test]
    #[ignore = "helper, run in a child process by default_profile_loads_in_libcontainer"]
    fn seccomp_default_helper() {
        if std::env::var_os("BERTH_SECCOMP_CHILD").is_none() {
            return;
        }
        let p = default_profile(&caps(DEFAULT_CAPS)).unwrap();
        libcontainer::seccomp::initialize_seccomp(&p).unwrap();
        // SAFETY: getpid cannot fail.
        let pid_ok = unsafe { libc::getpid() } > 0;
        println!(
            "DEFAULT getpid={pid_ok} fork={} clone-newuser={} clone-newns={}",
            clone_errno(0),
            clone_errno(libc::CLONE_NEWUSER as libc::c_long),
            clone_errno(libc::CLONE_NEWNS as libc::c_long),
        );
    }

    fn is_root() -> bool {
        let root = nix::unistd::Uid::effective().is_root();
        if !root {
            eprintln!("skipped: needs root to load a seccomp filter without no_new_privs");
        }
        root
    }

    #[test]
    fn masked_eq_follows_runc_semantics() {
        if !is_root() {
            return;
        }
        let stdout = run_child_helper("seccomp_umask_helper");
        // runc: block umask(m) when (m & 0o777) == 0o022.
        assert!(stdout.contains("UMASK-BLOCKED true false"), "{stdout}");
    }

    #[test]
    fn default_profile_loads_in_libcontainer() {
        if !is_root() || !matches!(std::env::consts::ARCH, "x86_64" | "aarch64") {
            return;
        }
        let stdout = run_child_helper("seccomp_default_helper");
        // fork works; creating namespaces with clone is refused (EPERM) without CAP_SYS_ADMIN.
        assert!(
            stdout.contains("DEFAULT getpid=true fork=0 clone-newuser=1 clone-newns=1"),
            "{stdout}"
        );
    }
}
