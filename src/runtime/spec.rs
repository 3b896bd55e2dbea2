//! TEMP STUB
use crate::errors::{ErrorKind, Kinded};
#[derive(Debug)] pub struct SpecError { kind: ErrorKind, message: String }
impl std::fmt::Display for SpecError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.message) } }
impl std::error::Error for SpecError {}
impl Kinded for SpecError { fn kind(&self) -> ErrorKind { self.kind } }
pub enum Namespace<'a> { Private, Host, Path(&'a std::path::Path) }
pub struct SpecOptions<'a> {
    pub id: &'a str,
    pub config: &'a bollard_stubs::models::ContainerConfig,
    pub host_config: &'a bollard_stubs::models::HostConfig,
    pub rootfs: &'a std::path::Path,
    pub hostname_path: &'a std::path::Path,
    pub hosts_path: &'a std::path::Path,
    pub resolv_conf_path: &'a std::path::Path,
    pub network: Namespace<'a>,
    pub ipc: Namespace<'a>, pub pid: Namespace<'a>, pub uts: Namespace<'a>,
    pub cgroup_path: String,
    pub cgroup_version: crate::runtime::CgroupVersion,
    pub init_path: Option<&'a std::path::Path>,
}
pub fn build(_opts: &SpecOptions) -> Result<oci_spec::runtime::Spec, SpecError> { todo!() }
pub fn prepare_rootfs(_rootfs: &std::path::Path, _working_dir: &str) -> Result<(), SpecError> { Ok(()) }
